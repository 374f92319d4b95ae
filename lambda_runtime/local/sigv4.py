"""AWS Signature Version 4, checked on the server side: the local Lambda API and S3 recompute the
signature a client made (the canonical request of the SigV4 specification, as botocore builds
it) and compare it in constant time.

Checked, in order, before the body is read (``parse``): an ``Authorization`` header (or, for S3,
presigned query parameters) of algorithm ``AWS4-HMAC-SHA256``; a credential scope of today's
date, this region, this service and ``aws4_request``; a request time within the allowed clock
skew (presigned: not expired); ``host`` and the date header among the signed headers. Then, with
the body (``verify``): the payload hash (``x-amz-content-sha256`` when sent, and then equal to the
body's SHA-256 unless it says the payload is unsigned; else the body's SHA-256) and the
signature itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: botocore's checksum-trailer uploads: the seed signature covers the headers, the body is not signed.
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)"
    r"\s*,\s*Signature=(?P<sig>[0-9a-f]{64})\s*"
)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_PRESIGN_S = 604_800  # 7 days, as S3


class AuthFailure(Exception):
    """Why a request is not authenticated; ``reason`` picks the service's error code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


#: Header values by lower-case name (every value a header appeared with).
Headers = Callable[[str], list[str]]


@dataclass(frozen=True)
class SignedRequest:
    """What the client claims before its body is read."""

    access_key: str
    timestamp: str  # YYYYMMDDTHHMMSSZ
    scope: str  # date/region/service/aws4_request
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool


def parse(method: str, query: str, headers: Headers, service: str, region: str,
          max_skew_s: float, now: dt.datetime | None = None) -> SignedRequest:
    """Parse and pre-check the signature's claims (no secret needed yet)."""
    now = now or dt.datetime.now(dt.UTC)
    auth = headers("authorization")
    params = _query_params(query)
    if auth:
        m = _AUTH.fullmatch(auth[0].strip())
        if auth[0].startswith("AWS "):
            raise AuthFailure("unsupported", "The authorization mechanism you have provided is "
                              "not supported. Please use AWS4-HMAC-SHA256.")
        if not m or len(auth) > 1:
            raise AuthFailure("malformed", "Authorization header is not AWS4-HMAC-SHA256 "
                              "Credential=..., SignedHeaders=..., Signature=...")
        cred, signed, signature = m["cred"], m["signed"], m["sig"]
        timestamp = _request_time(headers)
        presigned = False
    elif "X-Amz-Signature" in params and service == "s3":
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise AuthFailure("malformed", f"X-Amz-Algorithm: only {ALGORITHM} is supported")
        try:
            cred, signed = params["X-Amz-Credential"], params["X-Amz-SignedHeaders"]
            timestamp, signature = params["X-Amz-Date"], params["X-Amz-Signature"]
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            raise AuthFailure("malformed", "presigned URL without X-Amz-Credential, "
                              "X-Amz-SignedHeaders, X-Amz-Date or a whole X-Amz-Expires") from None
        if not 1 <= expires <= _MAX_PRESIGN_S:
            raise AuthFailure("malformed", f"X-Amz-Expires must be 1..{_MAX_PRESIGN_S}")
        presigned = True
    elif "AWSAccessKeyId" in params or "Signature" in params:
        raise AuthFailure("unsupported", "The authorization mechanism you have provided is not "
                          "supported. Please use AWS4-HMAC-SHA256 (botocore: "
                          "Config(signature_version='s3v4')).")
    else:
        raise AuthFailure("missing", "the request is not signed")
    access_key, _, scope = cred.partition("/")
    when = _parse_time(timestamp)
    expected = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    if scope != expected:
        raise AuthFailure("scope", f"Credential should be scoped to {expected!r}, not {scope!r}")
    if presigned:
        if now > when + dt.timedelta(seconds=expires):
            raise AuthFailure("expired", "Request has expired")
        if when - now > dt.timedelta(seconds=max_skew_s):
            raise AuthFailure("skew", "Request is not yet valid")
    elif abs((now - when).total_seconds()) > max_skew_s:
        raise AuthFailure("skew", _skew_message(timestamp, now, max_skew_s))
    names = tuple(signed.split(";"))
    if "host" not in names:
        raise AuthFailure("malformed", "SignedHeaders must include host")
    if not presigned and "x-amz-date" not in names and "date" not in names:
        raise AuthFailure("malformed", "SignedHeaders must include x-amz-date (or date)")
    if list(names) != sorted(set(names)) or any(n != n.lower() for n in names):
        raise AuthFailure("malformed", "SignedHeaders must be lower-case, sorted and unique")
    if any(not headers(n) for n in names):
        raise AuthFailure("malformed", "a signed header is missing from the request")
    return SignedRequest(access_key, timestamp, scope, names, signature, presigned)


def payload_hash(req: SignedRequest, headers: Headers, body: bytes | None, service: str) -> str:
    """The payload hash the signature covers; checks a declared hash against the body.
    ``body`` None: the body was not read (only allowed for unsigned payloads)."""
    if req.presigned:
        return UNSIGNED_PAYLOAD
    declared = headers("x-amz-content-sha256")
    if declared:
        value = declared[0].strip()
        if service == "s3" and value in (UNSIGNED_PAYLOAD, UNSIGNED_TRAILER):
            return value
        if not _HEX64.fullmatch(value):
            raise AuthFailure("payload", f"x-amz-content-sha256: {value[:60]!r} is not supported "
                              f"(a SHA-256 hex digest, or {UNSIGNED_PAYLOAD} for S3)")
        if body is None or hashlib.sha256(body).hexdigest() != value:
            raise AuthFailure("payload", "The provided 'x-amz-content-sha256' header does not "
                              "match what was computed.")
        return value
    if body is None:
        raise AuthFailure("payload", "the payload hash needs the body")
    return hashlib.sha256(body).hexdigest()


def verify(req: SignedRequest, secret: str, method: str, raw_path: str, query: str,
           headers: Headers, payload: str, service: str) -> None:
    """Recompute the signature with ``secret``; raise unless it equals the client's."""
    canonical = canonical_request(method, raw_path, query, headers, req.signed_headers, payload,
                                  service, drop_signature=req.presigned)
    string_to_sign = "\n".join(
        (ALGORITHM, req.timestamp, req.scope, hashlib.sha256(canonical.encode()).hexdigest()))
    date, region, service_name, _ = req.scope.split("/")
    key = _signing_key(secret, date, region, service_name)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, req.signature):
        raise AuthFailure("signature", "The request signature we calculated does not match the "
                          "signature you provided.")


def canonical_request(method: str, raw_path: str, query: str, headers: Headers,
                      signed: tuple[str, ...], payload: str, service: str,
                      drop_signature: bool = False) -> str:
    """SigV4's canonical request. S3 signs the path as sent; other services URI-encode it once
    more after removing dot segments (as botocore does)."""
    path = raw_path or "/"
    if service != "s3":
        path = quote(normalize_url_path(path), safe="/~")
    pairs = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        if drop_signature and unquote(key) == "X-Amz-Signature":
            continue
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    lines = "".join(f"{n}:{','.join(' '.join(v.split()) for v in headers(n))}\n" for n in signed)
    return "\n".join((method.upper(), path, canonical_query, lines, ";".join(signed), payload))


@lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _query_params(query: str) -> dict[str, str]:
    out = {}
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        out[unquote(key)] = unquote(value)
    return out


def _request_time(headers: Headers) -> str:
    amz = headers("x-amz-date")
    if amz:
        return amz[0].strip()
    date = headers("date")
    if date:
        try:
            return parsedate_to_datetime(date[0]).astimezone(dt.UTC).strftime(_TIMESTAMP)
        except (TypeError, ValueError):
            pass
    raise AuthFailure("malformed", "no valid x-amz-date or date header")


def _parse_time(timestamp: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthFailure("malformed", f"request time {timestamp[:40]!r} is not "
                          "YYYYMMDDTHHMMSSZ") from None


def _skew_message(timestamp: str, now: dt.datetime, max_skew_s: float) -> str:
    minutes = int(max_skew_s // 60)
    when = _parse_time(timestamp)
    stamp = now.strftime(_TIMESTAMP)
    if when < now:
        limit = (now - dt.timedelta(seconds=max_skew_s)).strftime(_TIMESTAMP)
        return f"Signature expired: {timestamp} is now earlier than {limit} ({stamp} - {minutes} min.)"
    limit = (now + dt.timedelta(seconds=max_skew_s)).strftime(_TIMESTAMP)
    return f"Signature not yet current: {timestamp} is still later than {limit} ({stamp} + {minutes} min.)"
