"""The Lambda API's error shape: HTTP status, ``x-amzn-ErrorType`` and a JSON body with
``message`` (and ``Type``), which botocore turns into its modeled exceptions."""

from __future__ import annotations

import json
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


class ApiError(Exception):
    """An AWS-shaped error. ``close``: end the connection after answering (a request whose
    sender is not trusted, or whose body was not read)."""

    def __init__(self, status: int, error_type: str, message: str, close: bool = False,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.close, self.extra = close, extra

    def render(self) -> tuple[int, dict[str, str], bytes]:
        kind = "Service" if self.status >= 500 else "User"
        body = json.dumps({"Type": kind, "message": self.message, **self.extra}).encode()
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": self.error_type}
        if self.status == 429:
            headers["Retry-After"] = "1"
        return self.status, headers, body


def invalid(message: str) -> ApiError:
    """400 InvalidParameterValueException: a parameter outside what Lambda allows."""
    return ApiError(400, "InvalidParameterValueException", message)


def not_found(name: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException",
                    f"Function not found: {function_arn(name)}")


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
