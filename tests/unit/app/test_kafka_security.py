"""One KafkaConnection gives the same security to aiokafka's clients and to Faust's: the TLS context verifies
the broker against the configured CA and host name, and SASL carries the configured user and mechanism."""
from __future__ import annotations

import ssl

from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from ingestflow.app.clients.kafka_security import broker_credentials, client_options
from ingestflow.app.core.settings import KafkaConnection, Settings

from ...conftest import BASE_ENV
from .conftest import TlsFiles

PASSWORD = "kafka-password-0123456789"


def connection(**env: str) -> KafkaConnection:
    return Settings.from_env({**BASE_ENV, **env}).kafka


def sasl_ssl(tls_files: TlsFiles) -> KafkaConnection:
    return connection(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                      KAFKA_SASL_USERNAME="ingestflow", KAFKA_SASL_PASSWORD=PASSWORD,
                      KAFKA_SSL_CAFILE=str(tls_files.ca))


def ca_subjects(context: ssl.SSLContext) -> list[object]:
    return [cert["subject"] for cert in context.get_ca_certs()]


def test_plaintext_clients_get_only_the_brokers() -> None:
    assert client_options(connection()) == {"bootstrap_servers": BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"],
                                             "security_protocol": "PLAINTEXT"}
    assert broker_credentials(connection()) is None


def test_sasl_ssl_clients_verify_the_broker_against_the_configured_ca(tls_files: TlsFiles) -> None:
    options = client_options(sasl_ssl(tls_files))
    assert {k: options[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                    "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ingestflow",
        "sasl_plain_password": PASSWORD}
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert ca_subjects(context) == [((("commonName", "test CA"),),)]


def test_the_worker_gets_the_same_security_as_every_other_client(tls_files: TlsFiles) -> None:
    kafka = sasl_ssl(tls_files)
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SASLCredentials) and PASSWORD not in repr(credentials)
    faust_side = credentials_to_aiokafka_auth(credentials)
    ours = client_options(kafka)
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert faust_side[key] == ours[key], key
    assert ca_subjects(faust_side["ssl_context"]) == ca_subjects(ours["ssl_context"])


def test_tls_without_sasl_gives_faust_ssl_credentials(tls_files: TlsFiles) -> None:
    kafka = connection(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(tls_files.ca),
                       KAFKA_SSL_CERTFILE=str(tls_files.cert), KAFKA_SSL_KEYFILE=str(tls_files.key))
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SSLCredentials)
    faust_side = credentials_to_aiokafka_auth(credentials)
    assert faust_side["security_protocol"] == "SSL" and ca_subjects(faust_side["ssl_context"]) == \
        [((("commonName", "test CA"),),)]
    assert "sasl_mechanism" not in client_options(kafka)
