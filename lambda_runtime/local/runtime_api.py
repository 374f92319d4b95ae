"""The Lambda Runtime API of one execution environment (what ``awslambdaric`` talks to):
``GET /2018-06-01/runtime/invocation/next``, ``POST .../invocation/{id}/response`` and
``.../error``, ``POST .../init/error``. Requests are read within the bounds of
``lambda_runtime.local.http``; a response body over ``MAX_RESPONSE_BYTES`` is refused before it
is read (413, as Lambda's runtime API does) and fails the invocation with
``Function.ResponseSizeTooLarge``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from lambda_runtime.local.http import BoundedHandler, RequestError

if TYPE_CHECKING:
    from lambda_runtime.local.environment import ExecutionEnvironment

RUNTIME_PREFIX = "/2018-06-01/runtime"
#: Responses over the 6 MB Invoke limit are still read up to this size (then reported as too
#: large by the service); beyond it they are refused unread.
MAX_RESPONSE_BYTES = 20 * 1024 * 1024
MAX_ERROR_BYTES = 1024 * 1024


def runtime_api_handler(env: ExecutionEnvironment) -> type[BoundedHandler]:
    class RuntimeAPI(BoundedHandler):
        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            try:
                self.send_body(status, body, headers)
            except OSError:  # the worker was killed while waiting for its next event
                self.close_connection = True

        def _refuse(self, err: RequestError) -> None:
            body = json.dumps({"errorType": err.error_type, "errorMessage": err.message}).encode()
            self.close_connection = True
            self._reply(err.status, body, {"Content-Type": "application/json"})

        def handle_request(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if self.command == "GET" and path == f"{RUNTIME_PREFIX}/invocation/next":
                    return self._next()
                if self.command == "POST" and path.startswith(RUNTIME_PREFIX + "/"):
                    return self._post(path[len(RUNTIME_PREFIX):].strip("/").split("/"))
                self._reply(404, b'{"errorMessage":"not found","errorType":"NotFound"}')
            except RequestError as err:
                self._refuse(err)

        def _next(self) -> None:
            inv = env.next_invocation()
            if inv is None:
                return self._reply(410, b"{}")
            deadline_ms = int((time.time() + env.config.timeout_s) * 1000)
            trace = f"Root=1-{int(time.time()):08x}-{inv.request_id.replace('-', '')[:24]}"
            self._reply(200, inv.payload, {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": env.config.arn,
                "Lambda-Runtime-Trace-Id": trace,
            })

        def _post(self, parts: list[str]) -> None:
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
            if parts == ["init", "error"]:
                body = self.read_body(MAX_ERROR_BYTES)
                env.init_error(body, error_type if error_type != "Unhandled" else "Runtime.InitError")
                return self._reply(202, b'{"status":"OK"}')
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                request_id = parts[1]
                if parts[2] == "response":
                    too_large = RequestError(
                        413, "RequestEntityTooLarge",
                        f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
                    try:
                        body = self.read_body(MAX_RESPONSE_BYTES, too_large)
                    except RequestError as err:
                        if err.status == 413:
                            env.response_too_large(request_id)
                        raise
                    if env.network is not None:
                        # the outputs leave the function at Bf within the billed duration (Eq. 10)
                        time.sleep(env.network.payload_s(len(body)))
                    accepted = env.finish(request_id, body, None)
                else:
                    accepted = env.finish(request_id, self.read_body(MAX_ERROR_BYTES), error_type)
                if accepted:
                    return self._reply(202, b'{"status":"OK"}')
                return self._reply(400, b'{"errorMessage":"invalid request id",'
                                        b'"errorType":"InvalidRequestID"}')
            self._reply(404, b'{"errorMessage":"not found","errorType":"NotFound"}')

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return RuntimeAPI
