"""TLS for plain-http endpoints: set up as httpx2's default, CA certificates read at the first handshake only."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import httpcore2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import load_settings
from core.model import build_client
from core.tls import AuthoritiesOnFirstHandshake, plain_http_context

SETTINGS = ("verify_mode", "check_hostname", "verify_flags", "options", "minimum_version", "maximum_version",
            "protocol", "keylog_filename")


def certificate_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def handshake(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        writer.close()
    finally:
        server.close()


@pytest.mark.parametrize("env", [{}, {"SSL_CERT_FILE": "bundle"}, {"SSL_CERT_DIR": "dir"}])
def test_the_context_is_set_up_as_the_default_one_and_loads_the_same_authorities(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, _key = certificate_pair(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    if "SSL_CERT_FILE" in env:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    if "SSL_CERT_DIR" in env:
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    default = httpcore2.default_ssl_context()
    context = plain_http_context("http://127.0.0.1:1234/v1")

    assert isinstance(context, AuthoritiesOnFirstHandshake)
    assert {name: getattr(context, name) for name in SETTINGS} == {name: getattr(default, name) for name in SETTINGS}
    assert context.cert_store_stats()["x509"] == 0
    context.load_authorities()
    assert context.cert_store_stats() == default.cert_store_stats()
    assert context.get_ca_certs() == default.get_ca_certs()


def test_https_endpoints_keep_the_default_context() -> None:
    assert plain_http_context("https://api.example.com/v1") is None
    client = build_client(load_settings({"OPENAI_BASE_URL": "https://api.example.com/v1", "OPENAI_API_KEY": "k"}))
    pool = client._client._transport._pool  # the transport openai builds itself
    assert not isinstance(pool._ssl_context, AuthoritiesOnFirstHandshake)
    assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_a_plain_http_client_reads_no_certificates_until_a_handshake(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, key_file = certificate_pair(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    client = build_client(load_settings({"OPENAI_BASE_URL": "http://127.0.0.1:1234/v1", "OPENAI_API_KEY": "k"}))
    context = client._client._transport._pool._ssl_context
    assert isinstance(context, AuthoritiesOnFirstHandshake)
    assert context.cert_store_stats()["x509"] == 0

    asyncio.run(handshake(context, cert_file, key_file))  # verified against SSL_CERT_FILE, read just now
    assert context.cert_store_stats()["x509_ca"] == 1


def test_a_handshake_with_an_unknown_certificate_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, key_file = certificate_pair(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = plain_http_context("http://127.0.0.1:1234/v1")
    assert context is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake(context, cert_file, key_file))
