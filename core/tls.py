"""TLS for plain-http model endpoints: the certificate authorities load with the first handshake, if one comes."""

from __future__ import annotations

import os
import platform
import re
import ssl
import sys
import threading
from typing import Any, Self
from urllib.parse import urlsplit

# Where httpx2's default context (httpcore2.default_ssl_context) looks when OpenSSL's compiled-in paths are unusable.
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)


class AuthoritiesOnFirstHandshake(ssl.SSLContext):
    """A client context set up as httpx2's default one, which reads its CA certificates at its first handshake.

    A local model server is usually plain http, so its client never does TLS, yet the default context parses
    the CA bundle (~150 certificates) into OpenSSL when the client is built: ~1.5 MB an idle agent holds for
    nothing. This context verifies the same way (TLS client, CERT_REQUIRED, hostname checked, the same
    locations), and loads them before any handshake, so a redirect or proxy to https is verified as before.
    """

    def __new__(cls, cafile: str | None, capath: str | None, *, as_default_context: bool) -> Self:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, cafile: str | None, capath: str | None, *, as_default_context: bool) -> None:
        """``as_default_context``: the settings of ``ssl.create_default_context`` (SSL_CERT_FILE or _DIR given)."""
        super().__init__()
        self._cafile, self._capath = cafile, capath
        self._authorities_lock = threading.Lock()
        self._authorities_loaded = False
        if as_default_context:
            if sys.version_info >= (3, 13):
                self.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
            keylog = os.environ.get("SSLKEYLOGFILE")
            if keylog and not sys.flags.ignore_environment:
                self.keylog_filename = keylog

    def load_authorities(self) -> None:
        """Read the CA certificates into this context, once."""
        with self._authorities_lock:
            if not self._authorities_loaded:
                if self._cafile or self._capath:
                    self.load_verify_locations(self._cafile, self._capath)
                self._authorities_loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        self.load_authorities()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        self.load_authorities()  # where asyncio and anyio start TLS
        return super().wrap_bio(*args, **kwargs)


def plain_http_context(base_url: str) -> AuthoritiesOnFirstHandshake | None:
    """The TLS context for a client of this endpoint, or None where httpx2's default must be kept.

    Mirrors httpcore2.default_ssl_context: SSL_CERT_FILE, else SSL_CERT_DIR, through create_default_context;
    else OpenSSL's compiled-in locations or the first known bundle. Only a plain-http endpoint gets one: an
    https endpoint, and macOS and Windows (the system trust store, through truststore), keep the default.
    """
    if urlsplit(base_url).scheme.lower() != "http" or platform.system() in ("Windows", "Darwin"):
        return None
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return AuthoritiesOnFirstHandshake(cafile, None, as_default_context=True)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return AuthoritiesOnFirstHandshake(None, capath, as_default_context=True)
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if capath and not cafile and not any(re.fullmatch(r"[0-9a-fA-F]{8}\.\d", f) for f in os.listdir(capath)):
        capath = None
    if not cafile and not capath:
        cafile = next(filter(os.path.isfile, CA_FILE_CANDIDATES), None)
    return AuthoritiesOnFirstHandshake(cafile, capath, as_default_context=False)
