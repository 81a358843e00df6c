"""The one Settings class and the only reader of the process environment.

Every setting ``ORDERLY_X`` may instead be given as ``ORDERLY_X_FILE=/path``
(the Docker/Kubernetes secrets convention). Settings are loaded explicitly by
the composition roots (``cli``, ``main``, tests), never at import time, so a
bad value is reported once, as one line naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "ORDERLY_"
DEV_SECRETS_FILE = "secrets.json"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable and is safe to print."""


def env_name(field: str) -> str:
    """Return the environment variable that carries *field*."""
    return f"{ENV_PREFIX}{field.upper()}"


class FileEnvSource(PydanticBaseSettingsSource):
    """Reads ``ORDERLY_X_FILE`` for every field, so secrets can come from mounted files."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._env = dict(os.environ)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the stripped contents of the file named by ``ORDERLY_X_FILE``, if set."""
        variable = env_name(field_name) + "_FILE"
        path = self._env.get(variable)
        if path is None:
            return None, field_name, False
        if env_name(field_name) in self._env:
            raise ConfigError(f"{env_name(field_name)} and {variable} are both set; use one")
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:
            raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _check_rate(value: str, variable: str) -> str:
    """Validate a `limits` rate string such as ``60/minute`` or ``10/15minutes``."""
    from limits import parse  # local: keeps `limits` off the import path of config readers

    try:
        parse(value)
    except ValueError:
        raise ValueError(f"not a rate like '60/minute' ({variable})") from None
    return value


def _postgres_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    scheme = urlsplit(value.get_secret_value()).scheme
    if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise ValueError("must be a postgresql:// URL")
    return value


class Settings(BaseSettings):
    """Validated configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_default=True
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".orderly")
    database_url: SecretStr | None = None
    # Set when database_url goes through a transaction-pooling PgBouncer: LISTEN/NOTIFY
    # (PgQueuer, flags), migrations and backups need a session of their own (deploy/README.md).
    database_direct_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    jwt_secret: SecretStr | None = None
    jwt_private_key: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "orderly"
    jwt_audience: str = "orderly-api"
    access_token_ttl_seconds: int = Field(900, ge=60, le=86400)
    refresh_token_ttl_seconds: int = Field(30 * 86400, ge=3600)
    encryption_keys: SecretStr | None = None
    # argon2id cost (OWASP: m=19 MiB, t=2, p=1, ≈35 ms here); raising it rehashes at next login.
    password_hash_time_cost: int = Field(2, ge=1, le=20)
    password_hash_memory_kib: int = Field(19456, ge=1024, le=4 * 1024 * 1024)

    smtp_url: SecretStr | None = None
    mail_from: str = "orderly@localhost"
    warehouse_webhook_url: str | None = None
    warehouse_webhook_secret: SecretStr | None = None
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    recommender_url: str | None = None
    recommender_timeout_ms: int = Field(250, ge=10, le=60_000)
    # The shop's currency: the default wallet, analytics and credit grants without one.
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    analytics_refresh_seconds: float = Field(60.0, ge=1, le=86_400)

    max_queue_depth: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    order_rate_limit: str = "60/minute"
    login_rate_limit: str = "10/15minutes"
    cors_origins: Annotated[list[str], NoDecode] = []
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed; none by default,
    # so a caller cannot pick the address that per-IP login limits and the audit log see.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    otlp_endpoint: str | None = None

    db_pool_size: int = Field(10, ge=1, le=200)
    db_statement_timeout_ms: int = Field(15_000, ge=100)
    # How long a request waits for a pooled connection before it is shed (503 overloaded).
    db_acquire_timeout_seconds: float = Field(1.0, gt=0, le=60)
    # Admission control (api/admission.py): requests in flight per API process, and how long
    # one more may wait for a slot before it is shed with 503 overloaded.
    max_concurrent_requests: int = Field(128, ge=1, le=100_000)
    admission_timeout_seconds: float = Field(1.0, gt=0, le=60)
    worker_batch_size: int = Field(20, ge=1, le=1000)
    worker_concurrency: int = Field(50, ge=2, le=10_000)
    # `orderly worker` lowers its own CPU priority by this much (os.nice) so that on a host
    # it shares with `orderly api`, requests come before e-mails when the CPU is saturated;
    # an idle host runs jobs at once either way. 0 keeps the inherited priority.
    worker_nice: int = Field(10, ge=0, le=19)
    job_heartbeat_timeout_seconds: float = Field(30.0, gt=0)
    shutdown_grace_seconds: float = Field(0.0, ge=0)
    worker_metrics_port: int = Field(9101, ge=0, le=65535)  # 0: `orderly worker` serves none
    # Progressive delivery: how often the worker checks guarded flags; how often every
    # process flushes its flag outcomes and per-minute request counts (≤ 10 s by contract).
    guard_interval_seconds: float = Field(30.0, gt=0, le=3600)
    telemetry_flush_seconds: float = Field(5.0, gt=0, le=10)
    # Off, this process records no flag outcomes and no SLO request counts (flags/lifecycle.py):
    # the guard and /v1/admin/slos do not see its traffic. For measuring or shedding that cost.
    record_request_outcomes: bool = True
    alertmanager_token: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values win, then the environment, then ``ORDERLY_X_FILE`` files."""
        assert isinstance(env_settings, EnvSettingsSource)
        return (init_settings, env_settings, FileEnvSource(settings_cls))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        proxies = [str(item).strip() for item in items if str(item).strip()]
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {proxy!r}") from None
        return proxies

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _postgres_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {
            "redis",
            "rediss",
            "unix",
        }:
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {
            "smtp",
            "smtps",
        }:
            raise ValueError("must be an smtp:// or smtps:// URL")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _check_encryption_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_keys(value.get_secret_value())
        return value

    @field_validator("warehouse_webhook_secret", "stripe_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a whsec_… secret")
        return value

    @field_validator("order_rate_limit")
    @classmethod
    def _check_order_rate(cls, value: str) -> str:
        return _check_rate(value, env_name("order_rate_limit"))

    @field_validator("login_rate_limit")
    @classmethod
    def _check_login_rate(cls, value: str) -> str:
        return _check_rate(value, env_name("login_rate_limit"))

    @model_validator(mode="after")
    def _production_requires_secrets(self) -> Settings:
        if self.env != "production":
            return self
        if self.jwt_secret is None and self.jwt_private_key is None:
            raise ConfigError(f"{env_name('jwt_secret')} is required when ORDERLY_ENV=production")
        if self.encryption_keys is None:
            raise ConfigError(
                f"{env_name('encryption_keys')} is required when ORDERLY_ENV=production"
            )
        pairs = [
            ("warehouse_webhook_url", "warehouse_webhook_secret"),
            ("stripe_api_key", "stripe_webhook_secret"),
        ]
        for configured, secret in pairs:
            if getattr(self, configured) is not None and getattr(self, secret) is None:
                raise ConfigError(
                    f"{env_name(secret)} is required when {env_name(configured)} is set"
                )
        return self

    @property
    def encryption_key_list(self) -> list[bytes]:
        """The AES-GCM keys, newest first."""
        if self.encryption_keys is None:
            return []
        return decode_keys(self.encryption_keys.get_secret_value())

    @property
    def embedded(self) -> bool:
        """True when orderly runs its own PostgreSQL from the data dir."""
        return self.database_url is None


def decode_keys(raw: str) -> list[bytes]:
    """Decode comma-separated base64url keys of 32 bytes each."""
    keys: list[bytes] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            key = base64.urlsafe_b64decode(item + "=" * (-len(item) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("each key must be base64url (secrets.token_urlsafe(32))") from None
        if len(key) != 32:
            raise ValueError("each key must decode to 32 bytes (secrets.token_urlsafe(32))")
        keys.append(key)
    if not keys:
        raise ValueError("at least one key is required")
    return keys


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = first.get("loc") or ("settings",)
    variable = env_name(str(loc[0]))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{variable}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the configuration; raise ConfigError with one printable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def with_dev_secrets(settings: Settings) -> Settings:
    """Fill missing secrets in development from a 0600 file in the data dir, creating it once.

    Production never reaches this: there a missing secret is a start-up error.
    """
    if settings.env == "production":
        return settings
    missing = {
        "jwt_secret": settings.jwt_secret is None and settings.jwt_private_key is None,
        "encryption_keys": settings.encryption_keys is None,
    }
    if not any(missing.values()):
        return settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / DEV_SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    generated = {
        "jwt_secret": stored.get("jwt_secret") or secrets.token_urlsafe(48),
        "encryption_keys": stored.get("encryption_keys") or secrets.token_urlsafe(32),
    }
    if generated != stored:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(generated, handle)
    os.chmod(path, 0o600)
    updates = {key: SecretStr(generated[key]) for key, needed in missing.items() if needed}
    return settings.model_copy(update=updates)
