"""Throw-away TLS material for tests: a private CA, a server certificate for 127.0.0.1 and
a client certificate, written as PEM files.

Why files: redis-server, redis-py and kafka-python all take certificates as paths, exactly
as an operator would configure them, so tests exercise the same settings users set.  The
certificates come from ``trustme`` (a dev dependency), which issues them from a fresh CA on
every call: nothing is shared between test sessions and nothing is checked in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSFiles", "make_tls_files"]


@dataclass(frozen=True)
class TLSFiles:
    """Paths of one CA's PEM files: the CA certificate, a server pair, a client pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: str | os.PathLike, *, server_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                   client_name: str = "streammoe-client") -> TLSFiles:
    """Create a new CA in ``directory`` and issue a server certificate valid for
    ``server_names`` (IP addresses and host names) and a client certificate.

    Both leaf certificates allow server and client authentication, so either may be used
    for mutual TLS.  Raises ``ImportError`` naming the dev extra when ``trustme`` is missing.
    """
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ImportError("make_tls_files needs the 'trustme' package (pip install 'streammoe[dev]')") from exc
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*server_names)
    client = ca.issue_cert(client_name)
    files = TLSFiles(ca_cert=out / "ca.pem", server_cert=out / "server.pem", server_key=out / "server.key",
                     client_cert=out / "client.pem", client_key=out / "client.key")
    ca.cert_pem.write_to_path(str(files.ca_cert))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    for key in (files.server_key, files.client_key):
        key.chmod(0o600)
    return files
