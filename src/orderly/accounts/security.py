"""The accounts runtime: hashing, field encryption and limits, built once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from orderly.accounts.tokens import AccessTokenVerifier
from orderly.config import Settings
from orderly.core.crypto import FieldCipher, Passwords
from orderly.core.limits import Limits


@dataclass(frozen=True)
class Security:
    """Everything accounts' use cases need besides the transaction (one per process)."""

    settings: Settings
    passwords: Passwords
    cipher: FieldCipher
    limits: Limits
    tokens: AccessTokenVerifier

    @classmethod
    def from_settings(cls, settings: Settings, limits: Limits | None = None) -> Security:
        """Build the runtime; *limits* is shared with other domains when given."""
        return cls(
            settings=settings,
            passwords=passwords_from_settings(settings),
            cipher=FieldCipher(settings.encryption_key_list),
            limits=limits or Limits.from_settings(settings),
            tokens=AccessTokenVerifier(settings),
        )


def passwords_from_settings(settings: Settings) -> Passwords:
    """argon2id with the configured cost."""
    return Passwords(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
    )
