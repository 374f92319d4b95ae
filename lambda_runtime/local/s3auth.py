"""Authentication of the local S3 (a WSGI middleware in front of moto's server, in its process).

S3 authenticates every request to a private bucket, so the local S3 does too: a SigV4 signature
(header, or a presigned URL) made with a key this server issued, the client's or an execution
environment's (``ServerSecrets``); otherwise S3's XML error (403 ``AccessDenied``,
``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, ``RequestTimeTooSkewed``, 400
``XAmzContentSHA256Mismatch``). The verified access key id is what the network model's links
are keyed by (``environ["moeopt.identity"]``). Bodies are bounded (``MAX_BODY_BYTES``).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

from lambda_runtime.local import sigv4
from lambda_runtime.local.credentials import ServerSecrets

#: S3's clock-skew allowance (RequestTimeTooSkewed beyond it).
MAX_SKEW_S = 900.0
#: The largest object body the local S3 accepts in one request (held in memory by moto).
MAX_BODY_BYTES = 1 << 30

_ERRORS = {  # AuthFailure.reason -> (status, S3 code)
    "missing": (403, "AccessDenied"),
    "malformed": (400, "AuthorizationHeaderMalformed"),
    "scope": (400, "AuthorizationHeaderMalformed"),
    "unknown_key": (403, "InvalidAccessKeyId"),
    "signature": (403, "SignatureDoesNotMatch"),
    "skew": (403, "RequestTimeTooSkewed"),
    "expired": (403, "AccessDenied"),
    "payload": (400, "XAmzContentSHA256Mismatch"),
    "too_large": (400, "EntityTooLarge"),
    "length": (411, "MissingContentLength"),
    "unsupported": (400, "InvalidRequest"),
}


class S3AuthMiddleware:
    """Only requests signed with this server's keys reach ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], secrets: ServerSecrets,
                 region: str = "us-east-1") -> None:
        self.app, self.secrets, self.region = app, secrets, region

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            environ["moeopt.identity"] = self._authenticate(environ)
        except sigv4.AuthFailure as failure:
            return _error(start_response, failure)
        return self.app(environ, start_response)

    def _authenticate(self, environ: dict[str, Any]) -> str:
        def headers(name: str) -> list[str]:
            key = name.upper().replace("-", "_")
            value = environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")
            return [value] if value is not None and value != "" else []

        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path, _, query = raw_uri.partition("?")
        method = environ.get("REQUEST_METHOD", "GET")
        signed = sigv4.parse(method, query, headers, "s3", self.region, MAX_SKEW_S)
        secret = self.secrets.secret_for(signed.access_key)
        if secret is None:
            raise sigv4.AuthFailure("unknown_key", "The AWS Access Key Id you provided does not "
                                    "exist in our records.")
        body = None
        declared = headers("x-amz-content-sha256")
        if not signed.presigned and (not declared or declared[0].strip() not in (
                sigv4.UNSIGNED_PAYLOAD, sigv4.UNSIGNED_TRAILER)):
            body = _read_body(environ)  # the signature covers its hash
            environ["wsgi.input"] = io.BytesIO(body)
        payload = sigv4.payload_hash(signed, headers, body, "s3")
        sigv4.verify(signed, secret, method, raw_path, query, headers, payload, "s3")
        return signed.access_key


def _read_body(environ: dict[str, Any]) -> bytes:
    if environ.get("HTTP_TRANSFER_ENCODING"):
        raise sigv4.AuthFailure("length", "a signed payload needs Content-Length")
    raw = environ.get("CONTENT_LENGTH") or "0"
    if not raw.isdigit():
        raise sigv4.AuthFailure("malformed", f"Content-Length: {raw[:40]!r}")
    n = int(raw)
    if n > MAX_BODY_BYTES:
        raise sigv4.AuthFailure("too_large", f"Your proposed upload exceeds the maximum allowed "
                                f"size of the local S3 ({MAX_BODY_BYTES} bytes)")
    body = environ["wsgi.input"].read(n) if n else b""
    if len(body) != n:
        raise sigv4.AuthFailure("malformed", f"the body ended after {len(body)} of {n} bytes")
    return body


def _error(start_response: Callable[..., Any], failure: sigv4.AuthFailure) -> list[bytes]:
    status, code = _ERRORS.get(failure.reason, (403, "AccessDenied"))
    message = "Access Denied" if failure.reason == "missing" else failure.message
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()
    reason = {400: "Bad Request", 403: "Forbidden", 411: "Length Required"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/xml"),
                                         ("Content-Length", str(len(body)))])
    return [body]
