"""The one place a KafkaConnection (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*) becomes client
arguments: aiokafka's keyword arguments for every client ingestflow builds, Faust's broker credentials for
the worker, and the reason a broker refused a connection, which aiokafka only logs."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError, KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from ingestflow.app.core.settings import KafkaConnection

__all__ = ["client_options", "broker_credentials", "refusal"]


def _ssl_context(kafka: KafkaConnection) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against KAFKA_SSL_CAFILE (the system's CAs when
    unset), and shows the client certificate when one is configured."""
    context: ssl.SSLContext = create_ssl_context(cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile,
                                                 keyfile=kafka.ssl_keyfile)
    return context


def _security_options(kafka: KafkaConnection) -> dict[str, Any]:
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.uses_ssl:
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None  # Settings requires it with a SASL protocol
        options.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                       sasl_plain_password=kafka.sasl_password.get())
    return options


def client_options(kafka: KafkaConnection) -> dict[str, Any]:
    """bootstrap_servers, security_protocol and, as the protocol needs them, ssl_context and sasl_*: the
    keyword arguments every aiokafka client (producer, consumer, admin) gets."""
    return {"bootstrap_servers": kafka.bootstrap, **_security_options(kafka)}


def broker_credentials(kafka: KafkaConnection) -> CredentialsT | None:
    """Faust's `broker_credentials` for the same connection (its consumer, producers and topic creation
    all use them); None for PLAINTEXT."""
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None
        return SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password.get(),
                               mechanism=kafka.sasl_mechanism,
                               ssl_context=_ssl_context(kafka) if kafka.uses_ssl else None)
    if kafka.uses_ssl:
        return SSLCredentials(_ssl_context(kafka))
    return None


async def refusal(kafka: KafkaConnection, timeout_s: float = 10.0) -> str | None:
    """Why the first broker does not serve us, in words an operator can act on (credentials refused, a
    certificate not trusted, a listener that expects TLS or SASL); None when it serves a metadata request now.

    aiokafka reports every failed bootstrap as "Unable to bootstrap" and only logs the cause, so the cause is
    found again with one connection of our own. The text never holds the password."""
    host, _, port = kafka.bootstrap_servers[0].rpartition(":")
    where = f"Kafka at {host}:{port}"
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), client_id="ingestflow-check",
                                                  request_timeout_ms=int(timeout_s * 1000),
                                                  **_security_options(kafka)), timeout_s)
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
        finally:
            conn.close()
    except SaslAuthenticationFailed:
        return (f"{where} refused the {kafka.sasl_mechanism} credentials of user {kafka.sasl_username!r} "
                f"(KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)")
    except UnsupportedSaslMechanismError:
        return f"{where} does not offer KAFKA_SASL_MECHANISM={kafka.sasl_mechanism}"
    except (ssl.SSLEOFError, ConnectionResetError) as exc:
        if kafka.uses_ssl:  # a plaintext listener answers a TLS hello by dropping the connection
            return (f"{where} dropped the TLS handshake (KAFKA_SECURITY_PROTOCOL={kafka.security_protocol}: "
                    f"does its listener speak TLS?)")
        return f"cannot reach {where}: {type(exc).__name__}"
    except ssl.SSLCertVerificationError as exc:
        return f"{where} shows a TLS certificate that is not trusted (KAFKA_SSL_CAFILE): {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"TLS with {where} failed: {exc.reason or type(exc).__name__}"
    except KafkaConnectionError:
        return f"{where} closed the connection{_closed_hint(kafka)}"
    except asyncio.TimeoutError:
        return f"{where} did not answer within {timeout_s:.0f}s"
    except (KafkaError, OSError) as exc:
        return f"cannot reach {where}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
    return None


def _closed_hint(kafka: KafkaConnection) -> str:
    """What a listener that closes the connection may expect and this client does not give it."""
    missing = [what for what, given in (("TLS", kafka.uses_ssl), ("SASL", kafka.uses_sasl),
                                        ("a client certificate (KAFKA_SSL_CERTFILE)",
                                         not kafka.uses_ssl or kafka.ssl_certfile is not None)) if not given]
    if not missing:
        return ""
    return f" (KAFKA_SECURITY_PROTOCOL={kafka.security_protocol}: does its listener expect {' or '.join(missing)}?)"
