"""Fixtures of the app's unit tests: TLS files made with openssl, as an operator's CA would issue them."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path  # signed by `ca`
    key: Path  # cert's key, unencrypted
    combined: Path  # cert and key in one file
    encrypted_key: Path  # cert's key under a passphrase
    other_key: Path  # a key of no certificate here


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key",
             "-out", "client.csr", cwd=d)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "client.pem", cwd=d)
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:a-passphrase", "-out", "encrypted.key", cwd=d)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.key", cwd=d)
    (d / "combined.pem").write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
    return TlsFiles(ca=d / "ca.pem", cert=d / "client.pem", key=d / "client.key", combined=d / "combined.pem",
                    encrypted_key=d / "encrypted.key", other_key=d / "other.key")
