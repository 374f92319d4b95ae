"""The embedded local backend: Lambda's Invoke/Runtime APIs and S3 on loopback."""

from __future__ import annotations

from lambda_runtime.local.backend import LocalBackend
from lambda_runtime.local.service import InvocationRecord, LambdaService

__all__ = ["InvocationRecord", "LambdaService", "LocalBackend"]
