"""Raw HTTP against the local backend: requests signed (or not) by hand, for what boto3 will not send."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_headers(creds: Any, method: str, url: str, body: bytes = b"", service: str = "lambda",
                   headers: dict[str, str] | None = None,
                   when: dt.datetime | None = None) -> dict[str, str]:
    """Headers of a request signed with ``creds`` (a ``Credentials`` of the backend) as botocore
    signs it; ``when`` signs it at another time (clock skew)."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    auth = SigV4Auth(Credentials(creds.access_key_id, creds.secret_access_key), service, "us-east-1")
    if when is None:
        auth.add_auth(req)
    else:
        import botocore.auth

        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)
        try:
            auth.add_auth(req)
        finally:
            botocore.auth.get_current_datetime = real
    return dict(req.headers.items())


def call(endpoint: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    host = urlsplit(endpoint)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def signed_call(backend: Any, method: str, path: str, body: Any = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """A request to the backend's Lambda API signed with its client credentials; JSON bodies
    given as Python objects; the answer's body decoded from JSON when it is JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = backend.lambda_endpoint + path
    status, out_headers, out = call(backend.lambda_endpoint, method, path, raw,
                                    signed_headers(backend.credentials, method, url, raw,
                                                   headers=headers))
    try:
        return status, out_headers, json.loads(out) if out else None
    except ValueError:
        return status, out_headers, out


def raw_exchange(endpoint: str, data: bytes, shut_write: bool = False, timeout: float = 20) -> bytes:
    """Send raw bytes on a new connection; everything the server answers until it closes."""
    host = urlsplit(endpoint)
    with socket.create_connection((host.hostname, host.port), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
