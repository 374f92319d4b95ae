"""The embedded local backend: Lambda's Invoke/Runtime APIs and S3 on loopback.

``LocalBackend``, ``LambdaService`` and ``InvocationRecord`` load on first use, so a command
that only needs a constant of this package does not import boto3 and moto.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InvocationRecord", "LambdaService", "LocalBackend"]


def __getattr__(name: str) -> Any:
    if name == "LocalBackend":
        from lambda_runtime.local.backend import LocalBackend

        return LocalBackend
    if name in ("LambdaService", "InvocationRecord"):
        from lambda_runtime.local import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
