from __future__ import annotations

from ipaddress import ip_network

from aiohttp.test_utils import make_mocked_request

from ingestflow.app.web.http import client_ip


def _req(peer: str, xff: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": xff} if xff else {}
    req = make_mocked_request("POST", "/ingest/events", headers=headers)
    return req.clone(remote=peer)


def test_untrusted_peer_is_the_client_even_with_forwarded_header() -> None:
    assert client_ip(_req("203.0.113.5", "1.1.1.1"), (ip_network("10.0.0.0/8"),)) == "203.0.113.5"


def test_trusted_proxy_yields_first_untrusted_hop_from_the_right() -> None:
    req = _req("10.0.0.2", "198.51.100.7, 203.0.113.9, 10.0.0.3")
    assert client_ip(req, (ip_network("10.0.0.0/8"),)) == "203.0.113.9"


def test_no_trusted_proxies_configured_uses_socket_address() -> None:
    assert client_ip(_req("10.0.0.2", "198.51.100.7"), ()) == "10.0.0.2"
