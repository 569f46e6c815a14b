"""CIDs computed locally; the expected values are what kubo 0.38.2 answered for b"hello\\n"."""
from __future__ import annotations

import pytest

from ingestflow.app.archive import cid
from ingestflow.app.archive.base import CidMismatch, verify_cid
from ingestflow.app.core.errors import ValidationError

HELLO = b"hello\n"


def test_raw_cidv1_matches_kubo() -> None:
    assert cid.raw_cid(HELLO) == "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"


def test_unixfs_cidv0_matches_kubo() -> None:
    assert cid.unixfs_cid_v0(HELLO) == "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"


@pytest.mark.parametrize("text", ["bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
                                  "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"])
def test_parse_round_trips(text: str) -> None:
    assert str(cid.parse_cid(text)) == text


@pytest.mark.parametrize("text", ["", "hello", "Qm" + "0" * 44, "bafy!!!", "z" * 50,
                                  "bafkqaaa"])
def test_malformed_cids_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        cid.parse_cid(text)
    assert info.value.field == "cid"


def test_verify_accepts_a_matching_cid_and_refuses_another() -> None:
    assert verify_cid(cid.raw_cid(HELLO), HELLO, "test") == cid.raw_cid(HELLO)
    with pytest.raises(CidMismatch):
        verify_cid(cid.raw_cid(b"other"), HELLO, "test")


def test_multi_block_objects_are_not_checked_locally() -> None:
    assert cid.expected_cids(b"x" * (cid.CHUNK_SIZE + 1)) is None
