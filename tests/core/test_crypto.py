"""Password hashing and field encryption."""

from __future__ import annotations

import secrets

import pytest

from orderly.config import decode_keys
from orderly.core.crypto import DecryptionError, FieldCipher, Passwords, key_id, token_digest


def test_argon2id_hash_verify_and_rehash_on_parameter_change() -> None:
    cheap = Passwords(time_cost=1, memory_kib=1024)
    stronger = Passwords(time_cost=2, memory_kib=2048)
    digest = cheap.hash("correct horse battery")
    assert digest.startswith("$argon2id$")
    assert "correct horse" not in digest
    assert cheap.verify(digest, "correct horse battery")
    assert not cheap.verify(digest, "wrong horse battery")
    assert not cheap.verify("not-a-hash", "anything")
    # Old parameters still verify, and are flagged for rehash.
    assert stronger.verify(digest, "correct horse battery")
    assert stronger.needs_rehash(digest)
    assert not cheap.needs_rehash(digest)
    assert cheap.hash("same") != cheap.hash("same")  # salted
    cheap.burn("whatever")  # the dummy path verifies without raising


def keys(n: int) -> list[bytes]:
    return decode_keys(",".join(secrets.token_urlsafe(32) for _ in range(n)))


def test_field_cipher_round_trip_and_context_binding() -> None:
    cipher = FieldCipher(keys(1))
    sealed = cipher.encrypt("Ada Lovelace", context="user_account.name:1")
    assert "Ada" not in sealed
    assert sealed.startswith(f"v1.{cipher.current_key_id}.")
    assert cipher.decrypt(sealed, context="user_account.name:1") == "Ada Lovelace"
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed, context="user_account.name:2")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DecryptionError):
        cipher.decrypt(tampered, context="user_account.name:1")
    with pytest.raises(DecryptionError):
        cipher.decrypt("plain text", context="user_account.name:1")


def test_rotation_reads_old_keys_and_writes_the_newest() -> None:
    old, new = keys(1)[0], keys(1)[0]
    before = FieldCipher([old])
    sealed = before.encrypt("secret address", context="c")
    rotated = FieldCipher([new, old])
    assert rotated.decrypt(sealed, context="c") == "secret address"
    assert not rotated.is_current(sealed)
    resealed = rotated.encrypt(rotated.decrypt(sealed, context="c"), context="c")
    assert rotated.is_current(resealed)
    assert FieldCipher([new]).decrypt(resealed, context="c") == "secret address"
    with pytest.raises(DecryptionError, match="no configured key"):
        FieldCipher([new]).decrypt(sealed, context="c")


def test_key_ids_and_digests_reveal_nothing() -> None:
    key = keys(1)[0]
    assert key_id(key) != key_id(keys(1)[0])
    assert key.hex() not in key_id(key)
    token = secrets.token_urlsafe(32)
    assert len(token_digest(token)) == 32
    assert token.encode() not in token_digest(token)


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher([b"short"])
    with pytest.raises(ValueError, match="at least one"):
        FieldCipher([])
