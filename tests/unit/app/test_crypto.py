"""The archive envelope: round trip, key rotation, and every kind of tampering fails loudly."""
from __future__ import annotations

import hashlib
import struct

import pytest

from ingestflow.app.archive.crypto import (HEADER_SIZE, MAGIC, Keyring, derive_key, key_id, open_envelope, read_header,
                                           seal)
from ingestflow.app.core.errors import ConfigError, IntegrityError

KEY = "current-master-key-0123456789"
OLD = "previous-master-key-0123456789"
BID = hashlib.sha256(b"batch").digest()


def _sealed(keyring: Keyring | None = None, user_id: int = 42, count: int = 3) -> bytes:
    return seal(keyring or Keyring(KEY), b'[{"user_id": 42, "data": []}]', user_id=user_id, count=count,
                batch_id=BID)


def test_round_trip_returns_plaintext_and_header() -> None:
    header, plain = open_envelope(Keyring(KEY), _sealed(), user_id=42)
    assert plain == b'[{"user_id": 42, "data": []}]'
    assert (header.user_id, header.count, header.batch_id) == (42, 3, BID)
    assert header.key_id == key_id(KEY.encode())


def test_layout_is_as_documented() -> None:
    blob = _sealed()
    assert HEADER_SIZE == 90
    assert blob[:4] == MAGIC and blob[4] == 1
    assert blob[5:13] == key_id(KEY.encode())
    assert struct.unpack(">Q", blob[41:49])[0] == 42
    assert struct.unpack(">I", blob[49:53])[0] == 3
    assert blob[53:85] == BID
    assert len(blob) == HEADER_SIZE + len(b'[{"user_id": 42, "data": []}]') + 16


def test_each_batch_gets_its_own_salt_nonce_and_key() -> None:
    a, b = read_header(_sealed()), read_header(_sealed())
    assert a.salt != b.salt and a.nonce != b.nonce
    master = KEY.encode()
    assert derive_key(master, a.salt, a.key_id) != derive_key(master, b.salt, b.key_id)


def test_old_batches_decrypt_after_rotation() -> None:
    old_blob = _sealed(Keyring(OLD))
    rotated = Keyring(KEY, (OLD,))
    _, plain = open_envelope(rotated, old_blob)
    assert plain.startswith(b"[")
    assert read_header(_sealed(rotated)).key_id == key_id(KEY.encode())


def test_unknown_key_id_is_refused_with_reason() -> None:
    with pytest.raises(IntegrityError, match="unknown key id"):
        open_envelope(Keyring(KEY), _sealed(Keyring(OLD)))


@pytest.mark.parametrize("offset", [41, 49, 53, 85, HEADER_SIZE, -1])
def test_any_flipped_byte_fails_authentication(offset: int) -> None:
    blob = bytearray(_sealed())
    blob[offset] ^= 0x01
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_envelope(Keyring(KEY), bytes(blob))


def test_truncated_object_fails() -> None:
    blob = _sealed()
    with pytest.raises(IntegrityError):
        open_envelope(Keyring(KEY), blob[:-1])
    with pytest.raises(IntegrityError, match="shorter"):
        open_envelope(Keyring(KEY), blob[:50])


def test_object_of_another_user_is_refused() -> None:
    with pytest.raises(IntegrityError, match="belongs to user 42"):
        open_envelope(Keyring(KEY), _sealed(), user_id=43)


def test_wrong_magic_is_not_an_archive_object() -> None:
    with pytest.raises(IntegrityError, match="magic"):
        open_envelope(Keyring(KEY), b"XXXX" + _sealed()[4:])


def test_missing_master_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LIGHTHOUSE_PRIVATE_KEY"):
        Keyring("")
