"""The archive envelope: AES-256-GCM under a per-batch key, with the header authenticated.

Byte layout (all integers big-endian), 90-byte header then the ciphertext:

    offset  size  field
    0       4     magic  b"IFAR"
    4       1     version 0x01
    5       8     key id: first 8 bytes of SHA-256(b"ingestflow-archive-key-id" || master key)
    13      16    salt, random per batch (HKDF salt)
    29      12    nonce, random 96 bits (AES-GCM IV)
    41      8     user id (unsigned)
    49      4     record count (unsigned)
    53      32    batch id (SHA-256 digest, see agents/archive.batch_id)
    85      5     reserved, zero
    90      n+16  ciphertext of the UTF-8 JSON plaintext, then the 16-byte GCM tag

Key: HKDF-SHA256(ikm = master key, salt = salt, info = b"ingestflow-archive-v1" || key id), 32 bytes.
Associated data: the whole 90-byte header, so the user id, batch id and record count are bound to the
ciphertext: an object swapped to another user, truncated, or altered anywhere fails with IntegrityError,
never decrypts to garbage. The key id lets keys rotate: encryption uses the current key, decryption looks
the key id up among the current and the old keys (ARCHIVE_OLD_KEYS).
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ingestflow.app.core.errors import ConfigError, IntegrityError

__all__ = ["MAGIC", "VERSION", "HEADER_SIZE", "Header", "Keyring", "key_id", "derive_key", "seal", "open_envelope",
           "read_header"]

MAGIC = b"IFAR"
VERSION = 1
_HEADER = struct.Struct(">4sB8s16s12sQI32s5s")
HEADER_SIZE = _HEADER.size  # 90
TAG_SIZE = 16
INFO = b"ingestflow-archive-v1"


@dataclass(frozen=True, slots=True)
class Header:
    key_id: bytes
    salt: bytes
    nonce: bytes
    user_id: int
    count: int
    batch_id: bytes

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.key_id, self.salt, self.nonce, self.user_id, self.count,
                            self.batch_id, b"\0" * 5)


def key_id(master: bytes) -> bytes:
    return hashlib.sha256(b"ingestflow-archive-key-id" + master).digest()[:8]


def derive_key(master: bytes, salt: bytes, kid: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO + kid).derive(master)


class Keyring:
    """The current master key (encrypts) and old ones (decrypt only), looked up by key id."""

    def __init__(self, current: str, old: tuple[str, ...] = ()) -> None:
        if not current:
            raise ConfigError("LIGHTHOUSE_PRIVATE_KEY", "is required to encrypt the archive")
        self._current = current.encode()
        self.current_id = key_id(self._current)
        self._keys = {key_id(k.encode()): k.encode() for k in (*old, current) if k}

    def master(self, kid: bytes) -> bytes:
        try:
            return self._keys[kid]
        except KeyError:
            raise IntegrityError(f"unknown key id {kid.hex()}: the key that encrypted this object is not configured") from None


def read_header(blob: bytes) -> Header:
    if len(blob) < HEADER_SIZE + TAG_SIZE:
        raise IntegrityError(f"not an archive object: {len(blob)} bytes is shorter than header and tag")
    magic, version, kid, salt, nonce, user_id, count, batch_id, _ = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise IntegrityError("not an archive object: wrong magic bytes")
    if version != VERSION:
        raise IntegrityError(f"unsupported envelope version {version}")
    return Header(kid, salt, nonce, user_id, count, batch_id)


def seal(keyring: Keyring, plaintext: bytes, *, user_id: int, count: int, batch_id: bytes) -> bytes:
    header = Header(keyring.current_id, os.urandom(16), os.urandom(12), user_id, count, batch_id)
    aad = header.pack()
    key = derive_key(keyring.master(header.key_id), header.salt, header.key_id)
    return aad + AESGCM(key).encrypt(header.nonce, plaintext, aad)


def open_envelope(keyring: Keyring, blob: bytes, *, user_id: int | None = None) -> tuple[Header, bytes]:
    """Authenticate and decrypt; `user_id` given, an object of another user is refused as swapped."""
    header = read_header(blob)
    if user_id is not None and header.user_id != user_id:
        raise IntegrityError(f"object belongs to user {header.user_id}, not {user_id}")
    key = derive_key(keyring.master(header.key_id), header.salt, header.key_id)
    try:
        plaintext = AESGCM(key).decrypt(header.nonce, blob[HEADER_SIZE:], blob[:HEADER_SIZE])
    except InvalidTag:
        raise IntegrityError("authentication failed: the object was altered or truncated") from None
    return header, plaintext
