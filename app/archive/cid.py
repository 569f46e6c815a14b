"""CIDs computed locally, so a backend's answer can be checked instead of trusted.

An object of at most one chunk (256 KiB, kubo's and Lighthouse's default chunk size) is a single block:
- CIDv1 raw (`add --cid-version=1`, raw leaves): 0x01 · 0x55 (raw) · 0x12 0x20 (sha2-256, 32 bytes) · digest,
  multibase base32 lower-case (prefix "b").
- CIDv0 (`Qm...`, Lighthouse's usual answer): base58btc of the sha2-256 multihash of one dag-pb node whose
  Data is a UnixFS File message holding the bytes.
Bigger objects are DAGs whose root depends on the chunker: those CIDs are checked by reading back instead.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from ingestflow.app.core.errors import ValidationError

__all__ = ["CHUNK_SIZE", "Cid", "parse_cid", "raw_cid", "unixfs_cid_v0", "unixfs_cid_v1", "expected_cids"]

CHUNK_SIZE = 262_144
RAW, DAG_PB, SHA2_256 = 0x55, 0x70, 0x12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class Cid:
    version: int
    codec: int
    digest: bytes

    def __str__(self) -> str:
        mh = bytes([SHA2_256, len(self.digest)]) + self.digest
        if self.version == 0:
            return _b58encode(mh)
        return "b" + base64.b32encode(_varint(1) + _varint(self.codec) + mh).decode().lower().rstrip("=")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while pos < len(data):
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("malformed varint")


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        idx = _B58.find(ch)
        if idx < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + idx
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def parse_cid(text: str) -> Cid:
    """A sha2-256 CIDv0 (`Qm...`) or base32 CIDv1 (`b...`); anything else is a 400 naming the reason."""
    try:
        if len(text) == 46 and text.startswith("Qm"):
            mh = _b58decode(text)
            version, codec = 0, DAG_PB
        elif text.startswith("b") and 8 < len(text) < 120:
            body = text[1:].upper()
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
            version, pos = _read_varint(raw, 0)
            codec, pos = _read_varint(raw, pos)
            if version != 1:
                raise ValueError(f"unsupported CID version {version}")
            mh = raw[pos:]
        else:
            raise ValueError("expected a CIDv0 (Qm..., 46 characters) or a base32 CIDv1 (b...)")
        if len(mh) != 34 or mh[0] != SHA2_256 or mh[1] != 32:
            raise ValueError("only sha2-256 multihashes are supported")
        if codec not in (RAW, DAG_PB):
            raise ValueError(f"unsupported codec 0x{codec:x}")
    except (ValueError, binascii.Error) as exc:
        raise ValidationError("cid", f"is not a valid CID: {exc}") from None
    return Cid(version, codec, mh[2:])


def raw_cid(data: bytes) -> str:
    return str(Cid(1, RAW, hashlib.sha256(data).digest()))


def _unixfs_block(data: bytes) -> bytes:
    # UnixFS Data{Type=File(2), Data=bytes, filesize=n} inside PBNode{Data=...} (no links).
    unixfs = b"\x08\x02" + (b"\x12" + _varint(len(data)) + data if data else b"") + b"\x18" + _varint(len(data))
    return b"\x0a" + _varint(len(unixfs)) + unixfs


def unixfs_cid_v0(data: bytes) -> str:
    return str(Cid(0, DAG_PB, hashlib.sha256(_unixfs_block(data)).digest()))


def unixfs_cid_v1(data: bytes) -> str:
    return str(Cid(1, DAG_PB, hashlib.sha256(_unixfs_block(data)).digest()))


def expected_cids(data: bytes) -> set[str] | None:
    """Every CID a single-block object may correctly have; None when it spans several blocks."""
    if len(data) > CHUNK_SIZE:
        return None
    return {raw_cid(data), unixfs_cid_v0(data), unixfs_cid_v1(data)}
