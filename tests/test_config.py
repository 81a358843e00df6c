"""Configuration: validated at start-up, one clear line and exit 2 on a bad value."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orderly.config import ConfigError, load_settings, with_dev_secrets

KEY = secrets.token_urlsafe(32)
JWT = secrets.token_urlsafe(48)


def run_orderly(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `orderly` command with only the given ORDERLY_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    return subprocess.run(
        [sys.executable, "-m", "orderly", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_production_without_jwt_secret_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_orderly(
        "api", env={"ORDERLY_ENV": "production", "ORDERLY_ENCRYPTION_KEYS": KEY}, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ORDERLY_JWT_SECRET" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_non_numeric_port_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_orderly("serve", env={"ORDERLY_PORT": "abc"}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ORDERLY_PORT" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    assert run_orderly("frobnicate", env={}, cwd=tmp_path).returncode == 2


def test_file_variant_reads_the_secret_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text(JWT + "\n")
    monkeypatch.setenv("ORDERLY_JWT_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("ORDERLY_ENCRYPTION_KEYS", KEY)
    monkeypatch.setenv("ORDERLY_ENV", "production")
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == JWT
    assert JWT not in repr(settings)


def test_file_and_plain_variable_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "port").write_text("9000")
    monkeypatch.setenv("ORDERLY_PORT", "8000")
    monkeypatch.setenv("ORDERLY_PORT_FILE", str(tmp_path / "port"))
    with pytest.raises(ConfigError, match="ORDERLY_PORT"):
        load_settings()


def test_missing_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERLY_JWT_SECRET_FILE", "/nonexistent/secret")
    with pytest.raises(ConfigError, match="ORDERLY_JWT_SECRET_FILE"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORDERLY_JWT_SECRET", "too-short"),
        ("ORDERLY_ENCRYPTION_KEYS", "not-a-key"),
        ("ORDERLY_DATABASE_URL", "mysql://x@y/z"),
        ("ORDERLY_ORDER_RATE_LIMIT", "lots"),
        ("ORDERLY_WAREHOUSE_WEBHOOK_SECRET", "plain"),
        ("ORDERLY_MAX_QUEUE_DEPTH", "0"),
    ],
)
def test_invalid_values_name_their_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(variable)
    assert value not in str(caught.value)  # never echo a (possibly secret) value


def test_production_requires_an_integrations_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERLY_ENV", "production")
    monkeypatch.setenv("ORDERLY_JWT_SECRET", JWT)
    monkeypatch.setenv("ORDERLY_ENCRYPTION_KEYS", KEY)
    monkeypatch.setenv("ORDERLY_WAREHOUSE_WEBHOOK_URL", "https://warehouse.example/hook")
    with pytest.raises(ConfigError, match="ORDERLY_WAREHOUSE_WEBHOOK_SECRET"):
        load_settings()


def test_development_secrets_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = with_dev_secrets(load_settings(data_dir=tmp_path))
    second = with_dev_secrets(load_settings(data_dir=tmp_path))
    assert first.jwt_secret is not None
    assert second.jwt_secret is not None
    assert first.jwt_secret.get_secret_value() == second.jwt_secret.get_secret_value()
    assert first.encryption_key_list == second.encryption_key_list
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600
