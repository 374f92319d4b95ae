"""The local Lambda API's HTTP front end: routes, authentication, bounded bodies, error shapes.

Every request must be signed (SigV4, service ``lambda``) with the server's client credentials
(``ServerSecrets``): unsigned, wrongly signed or skewed requests get 403 in Lambda's shape
(``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException``) and a function's own credentials get ``AccessDeniedException``
(its role allows the local S3 only). A body is checked against its route's limit before it is
read (Invoke: 6,291,456 bytes, 413 ``RequestEntityTooLargeException``) and read whole or not at
all (``lambda_runtime.local.http``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lambda_runtime.local import sigv4
from lambda_runtime.local.errors import ACCOUNT, REGION, ApiError
from lambda_runtime.local.http import BoundedHandler, RequestError
from lambda_runtime.local.validation import path_name

if TYPE_CHECKING:
    from lambda_runtime.local.service import LambdaService

log = logging.getLogger(__name__)

STATUS_PATH = "/moeopt/status"
MAX_SKEW_S = 300.0  # Lambda's allowance for the request time (5 minutes)
SYNC_PAYLOAD_LIMIT = 6_291_456
CREATE_LIMIT = 70_167_211  # CreateFunction's request limit (a 50 MB .zip in base64)
CONTROL_LIMIT = 1 << 20

Action = Callable[["LambdaService", re.Match[str], bytes, dict[str, str], Any], tuple[int, dict[str, str], bytes]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    action: Action
    limit: int = CONTROL_LIMIT


def _json_out(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps(data).encode()


def _body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "InvalidRequestContentException",
                       "Could not parse request body into json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidRequestContentException", "request body must be a JSON object")
    return data


def _latest_only(query: dict[str, str], name: str) -> None:
    qualifier = query.get("Qualifier")
    if qualifier not in (None, "$LATEST"):
        raise ApiError(404, "ResourceNotFoundException",
                       f"Function not found: {name}:{qualifier} (the local backend has $LATEST only)")


def _invoke(s: LambdaService, m: re.Match[str], body: bytes, q: dict[str, str], h: Any) -> Any:
    name = path_name(m[1])
    _latest_only(q, name)
    return s.invoke(name, body, h.get("X-Amz-Invocation-Type", "RequestResponse"),
                    h.get("X-Amz-Log-Type", "None"))


def _get_function(s: LambdaService, m: re.Match[str], body: bytes, q: dict[str, str], h: Any) -> Any:
    name = path_name(m[1])
    _latest_only(q, name)
    return _json_out(200, s.control.get_function(name))


def _delete_function(s: LambdaService, m: re.Match[str], body: bytes, q: dict[str, str], h: Any) -> Any:
    s.delete_function(path_name(m[1]))
    return 204, {}, b""


def _delete_concurrency(s: LambdaService, m: re.Match[str], body: bytes, q: dict[str, str], h: Any) -> Any:
    s.control.delete_concurrency(path_name(m[1]))
    return 204, {}, b""


_FN = r"/([^/?]+)"
ROUTES = (
    Route("POST", re.compile(r"/2015-03-31/functions/?"), "CreateFunction",
          lambda s, m, b, q, h: _json_out(201, s.control.create(_body(b))), CREATE_LIMIT),
    Route("GET", re.compile(r"/2015-03-31/functions/?"), "ListFunctions",
          lambda s, m, b, q, h: _json_out(200, s.control.list_functions())),
    Route("POST", re.compile(rf"/2015-03-31/functions{_FN}/invocations/?"), "InvokeFunction",
          _invoke, SYNC_PAYLOAD_LIMIT),
    Route("GET", re.compile(rf"/2015-03-31/functions{_FN}/configuration/?"), "GetFunctionConfiguration",
          lambda s, m, b, q, h: _json_out(200, s.control.get_configuration(path_name(m[1])))),
    Route("PUT", re.compile(rf"/2015-03-31/functions{_FN}/configuration/?"), "UpdateFunctionConfiguration",
          lambda s, m, b, q, h: _json_out(200, s.update_configuration(path_name(m[1]), _body(b)))),
    Route("GET", re.compile(rf"/2015-03-31/functions{_FN}/?"), "GetFunction", _get_function),
    Route("DELETE", re.compile(rf"/2015-03-31/functions{_FN}/?"), "DeleteFunction", _delete_function),
    Route("PUT", re.compile(rf"/2017-10-31/functions{_FN}/concurrency/?"), "PutFunctionConcurrency",
          lambda s, m, b, q, h: _json_out(200, s.control.put_concurrency(path_name(m[1]), _body(b)))),
    Route("DELETE", re.compile(rf"/2017-10-31/functions{_FN}/concurrency/?"), "DeleteFunctionConcurrency",
          _delete_concurrency),
    Route("GET", re.compile(rf"/2019-09-30/functions{_FN}/concurrency/?"), "GetFunctionConcurrency",
          lambda s, m, b, q, h: _json_out(200, s.control.get_concurrency(path_name(m[1])))),
    Route("GET", re.compile(r"/2016-08-19/account-settings/?"), "GetAccountSettings",
          lambda s, m, b, q, h: _json_out(200, s.control.account_settings())),
    Route("GET", re.compile(re.escape(STATUS_PATH) + "/?"), "Status",  # the backend's own view
          lambda s, m, b, q, h: _json_out(200, s.status(detail=True))),
)

_AUTH_ERRORS = {  # sigv4.AuthFailure.reason -> (status, Lambda's error type, message or None)
    "missing": (403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
    "malformed": (400, "IncompleteSignatureException", None),
    "unsupported": (400, "IncompleteSignatureException", None),
    "unknown_key": (403, "UnrecognizedClientException",
                    "The security token included in the request is invalid."),
    "signature": (403, "InvalidSignatureException",
                  "The request signature we calculated does not match the signature you provided. "
                  "Check your AWS Secret Access Key and signing method. Consult the service "
                  "documentation for details."),
    "skew": (403, "InvalidSignatureException", None),
    "scope": (403, "InvalidSignatureException", None),
    "payload": (403, "InvalidSignatureException", None),
    "denied": (403, "AccessDeniedException", None),
}


def route_for(method: str, path: str) -> tuple[Route, re.Match[str]]:
    for route in ROUTES:
        if route.method == method and (m := route.pattern.fullmatch(path)):
            return route, m
    raise ApiError(404, "UnknownOperationException", f"unsupported: {method} {path[:200]}")


def lambda_api_handler(service: LambdaService) -> type[BoundedHandler]:
    secrets = service.secrets

    class LambdaAPI(BoundedHandler):
        def handle_request(self) -> None:
            raw_path, _, query = self.path.partition("?")
            try:
                status, headers, out = self._serve(raw_path, query)
            except RequestError as err:
                status, headers, out = ApiError(err.status, err.error_type, err.message,
                                                close=True).render()
                self.close_connection = True
            except ApiError as err:
                status, headers, out = err.render()
                self.close_connection = self.close_connection or err.close
            except Exception as exc:  # noqa: BLE001 - report as a service error, keep serving
                log.warning("local Lambda API failure on %s %s: %s: %s", self.command,
                            raw_path[:200], type(exc).__name__, exc)
                status, headers, out = ApiError(500, "ServiceException",
                                                f"{type(exc).__name__}: {exc}").render()
            headers = {"Content-Type": "application/json", **headers}
            try:
                self.send_body(status, out, headers)
            except OSError:
                self.close_connection = True

        def _serve(self, raw_path: str, query: str) -> tuple[int, dict[str, str], bytes]:
            route, match = route_for(self.command, raw_path)
            too_large = RequestError(413, "RequestEntityTooLargeException",
                                     f"Request must be smaller than {route.limit} bytes for the "
                                     f"{route.operation} operation")
            self.content_length(route.limit, too_large)  # before anything else is read
            signed = self._authenticate(query, route)
            body = self.read_body(route.limit, too_large)
            self._verify(signed, raw_path, query, body)
            params = {unquote(k): unquote(x)
                      for k, _, x in (p.partition("=") for p in query.split("&") if p)}
            return route.action(service, match, body, params, self.headers)

        def _headers(self, name: str) -> list[str]:
            return self.headers.get_all(name) or []

        def _authenticate(self, query: str, route: Route) -> sigv4.SignedRequest:
            try:
                signed = sigv4.parse(self.command, query, self._headers, "lambda", REGION, MAX_SKEW_S)
                if secrets.secret_for(signed.access_key) is None:
                    raise sigv4.AuthFailure("unknown_key", "")
                if not secrets.is_client(signed.access_key):  # an execution environment's role
                    raise sigv4.AuthFailure(
                        "denied", f"User: arn:aws:sts::{ACCOUNT}:assumed-role/moeopt-local-function/"
                        f"{signed.access_key} is not authorized to perform: "
                        f"lambda:{route.operation} (a function's role allows the local S3 only)")
            except sigv4.AuthFailure as failure:
                raise _auth_error(failure) from None
            return signed

        def _verify(self, signed: sigv4.SignedRequest, raw_path: str, query: str, body: bytes) -> None:
            try:
                payload = sigv4.payload_hash(signed, self._headers, body, "lambda")
                secret = secrets.secret_for(signed.access_key)
                assert secret is not None
                sigv4.verify(signed, secret, self.command, raw_path, query, self._headers,
                             payload, "lambda")
            except sigv4.AuthFailure as failure:
                raise _auth_error(failure) from None

    return LambdaAPI


def _auth_error(failure: sigv4.AuthFailure) -> ApiError:
    status, error_type, message = _AUTH_ERRORS.get(failure.reason, (403, "AccessDeniedException", None))
    return ApiError(status, error_type, message or failure.message, close=True)
