"""Password hashing (argon2id) and field encryption (AES-GCM with key rotation).

Passwords: argon2id through argon2-cffi; a hash made with older parameters
still verifies and is flagged for rehash, so raising the cost takes effect as
users log in. Unknown accounts are "verified" against a dummy hash so a wrong
e-mail and a wrong password cost the same time.

Fields: each value is sealed with the newest key as ``v1.<key id>.<base64url(nonce ‖ ciphertext)>``;
the key id names which key opens it, so keys can rotate (newest first in
``ORDERLY_ENCRYPTION_KEYS``) while old rows still decrypt until re-encrypted.
The caller passes an *associated data* string (table, column, row id) that
binds a ciphertext to its place: a value copied into another row fails to open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_VERSION = "v1"  # noqa: S105 - format tag of sealed values
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A sealed value cannot be opened: unknown key id, tampered data or wrong context."""


class Passwords:
    """argon2id hashing with configurable cost and a constant-work path for unknown users."""

    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1):
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Same parameters as real hashes, so verifying against it costs the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """A new argon2id hash (random salt) of *password*."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when *password* matches; never raises for a mismatch or a malformed hash."""
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def burn(self, password: str) -> None:
        """Spend the time of one verification (for unknown accounts: no timing oracle)."""
        self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def key_id(key: bytes) -> str:
    """A short public fingerprint of *key* (never the key itself)."""
    digest = hashlib.sha256(b"orderly-field-key:" + key).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode()


class FieldCipher:
    """AES-256-GCM for columns; seals with the newest key, opens with any configured one."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        for key in keys:
            if len(key) != 32:
                raise ValueError("encryption keys must be 32 bytes")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.current_key_id = key_id(keys[0])
        self._current = self._keys[self.current_key_id]

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Seal *plaintext* with the newest key, bound to *context* (e.g. ``user.name:<id>``)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{TOKEN_VERSION}.{self.current_key_id}.{body}"

    def decrypt(self, token: str, *, context: str) -> str:
        """Open a sealed value; raise DecryptionError when it cannot be opened."""
        try:
            version, kid, body = token.split(".", 2)
        except ValueError:
            raise DecryptionError("not a sealed value") from None
        if version != TOKEN_VERSION:
            raise DecryptionError("unknown sealed-value version")
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(f"no configured key has id {kid}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise DecryptionError("sealed value failed authentication") from None
        return plain.decode()

    @staticmethod
    def key_id_of(token: str) -> str | None:
        """The key id a sealed value names, or None when it is not a sealed value."""
        parts = token.split(".", 2)
        return parts[1] if len(parts) == 3 and parts[0] == TOKEN_VERSION else None

    def is_current(self, token: str) -> bool:
        """True when *token* is sealed with the newest key."""
        return self.key_id_of(token) == self.current_key_id


def opaque_token(nbytes: int = 32) -> str:
    """A random URL-safe secret (refresh tokens and the like)."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> bytes:
    """SHA-256 of a high-entropy token, for storing and looking it up without keeping it."""
    return hashlib.sha256(token.encode()).digest()


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking where they differ."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)
