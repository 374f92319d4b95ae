"""Checks of the Lambda API's inputs, as Lambda makes them: each failure is a 400
``InvalidParameterValueException`` whose message names the field and what is allowed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from lambda_runtime.local.errors import ApiError, invalid
from lambda_runtime.local.worker import RESERVED_VARIABLES

MEMORY_RANGE = (128, 10_240)
TIMEOUT_RANGE = (1, 900)
ENVIRONMENT_BYTES = 4096  # Lambda's limit on all variables of a function together
RUNTIMES = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13", "python3.14")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ARN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d:)?(?:\d{12}:)?"
    r"(?:function:)?(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?")
_ROLE = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]{1,512}")
_VARIABLE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")
_HANDLER = re.compile(r"[^\s]{1,128}")


def required(body: dict[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise invalid(f"{key}: required")
    return body[key]


def function_name(raw: Any, where: str = "FunctionName") -> str:
    """A function's name from a name, an ARN or a partial ARN (qualifier $LATEST only)."""
    if not isinstance(raw, str):
        raise invalid(f"{where}: must be a string")
    m = _ARN.fullmatch(raw)
    if not m:
        raise invalid(f"{where}: {raw[:160]!r}; allowed: 1-64 letters, digits, - or _ "
                      "(or the function's ARN)")
    if m["qualifier"] not in (None, "$LATEST"):
        raise ApiError(404, "ResourceNotFoundException",
                       f"Function not found: {raw[:200]} (the local backend has $LATEST only)")
    return m["name"]


def path_name(raw: str) -> str:
    """The function named in a request path (URL-encoded)."""
    return function_name(unquote(raw))


def role(raw: Any) -> str:
    if not isinstance(raw, str) or not _ROLE.fullmatch(raw):
        raise invalid(f"Role: {str(raw)[:160]!r}; allowed: an IAM role ARN, "
                      "arn:aws:iam::<12-digit account>:role/<name>")
    return raw


def integer(body: dict[str, Any], key: str, default: int, bounds: tuple[int, int]) -> int:
    raw = body.get(key, default)
    if raw is None:
        raw = default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise invalid(f"{key}: {str(raw)[:40]!r}; allowed: an integer {bounds[0]}..{bounds[1]}")
    if not bounds[0] <= raw <= bounds[1]:
        raise invalid(f"{key}: {raw} not in {bounds[0]}..{bounds[1]}")
    return raw


def choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    raw = body.get(key, default)
    if raw not in allowed:
        raise invalid(f"{key}: {str(raw)[:40]!r}; allowed: {', '.join(allowed)}")
    return str(raw)


def mapping(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid(f"{where}: must be an object")
    return raw


def runtime(raw: Any) -> str:
    if raw not in RUNTIMES:
        raise invalid(f"Runtime: {str(raw)[:40]!r}; allowed here: {', '.join(RUNTIMES)} (the "
                      "local backend runs Python functions)")
    return str(raw)


def handler(raw: Any, where: str = "Handler") -> str:
    if not isinstance(raw, str) or not _HANDLER.fullmatch(raw):
        raise invalid(f"{where}: {str(raw)[:160]!r}; allowed: module.function, 1-128 characters, "
                      "no spaces")
    return raw


def description(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 256:
        raise invalid("Description: a string of at most 256 characters")
    return raw


def environment(raw: Any) -> dict[str, str]:
    """``{"Variables": {...}}``: names Lambda allows, none reserved, 4 KB in all."""
    if raw is None:
        return {}
    variables = mapping(raw, "Environment").get("Variables") or {}
    variables = mapping(variables, "Environment.Variables")
    for key, value in variables.items():
        if not _VARIABLE.fullmatch(key):
            raise invalid(f"Environment.Variables: {key[:80]!r}; allowed names: a letter, then "
                          "letters, digits or _")
        if not isinstance(value, str):
            raise invalid(f"Environment.Variables.{key}: must be a string")
    reserved = sorted(k for k in variables if k in RESERVED_VARIABLES)
    if reserved:
        raise invalid("Lambda was unable to configure your environment variables because the "
                      "environment variables you have provided contains reserved keys that are "
                      f"currently not supported for modification. Reserved keys used in this "
                      f"request: {','.join(reserved)}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
    if size > ENVIRONMENT_BYTES:
        raise invalid("Lambda was unable to configure your environment variables because the "
                      f"environment variables you have provided exceeded the 4KB limit ({size} "
                      "bytes)")
    return dict(variables)


def architectures(raw: Any) -> str:
    if raw is None:
        return "x86_64"
    if not isinstance(raw, list) or len(raw) != 1 or raw[0] not in ("x86_64", "arm64"):
        raise invalid(f"Architectures: {str(raw)[:80]}; allowed: [\"x86_64\"] or [\"arm64\"]")
    return str(raw[0])


def tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    raw = mapping(raw, "Tags")
    if len(raw) > 50 or not all(isinstance(k, str) and isinstance(x, str) for k, x in raw.items()):
        raise invalid("Tags: at most 50 string keys with string values")
    return dict(raw)
