"""A function's configuration as CreateFunction / UpdateFunctionConfiguration left it, and its
``FunctionConfiguration`` JSON (GetFunction, ListFunctions, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lambda_runtime.local.errors import function_arn


@dataclass(frozen=True)
class FunctionConfig:
    """What the control plane registered; ``task_root`` is the local directory holding the code."""

    name: str
    handler: str
    memory_mb: int
    timeout_s: float
    task_root: str
    environment: dict[str, str] = field(default_factory=dict)
    architecture: str = "x86_64"
    package_type: str = "Zip"
    runtime: str | None = None
    role: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    last_modified: str = ""
    code_sha256: str = ""
    code_size: int = 0

    @property
    def arn(self) -> str:
        return function_arn(self.name)

    def configuration(self) -> dict[str, Any]:
        """Lambda's ``FunctionConfiguration``."""
        return {
            "FunctionName": self.name,
            "FunctionArn": self.arn,
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "CodeSha256": self.code_sha256,
            "Timeout": int(self.timeout_s),
            "MemorySize": self.memory_mb,
            "LastModified": self.last_modified,
            "Version": "$LATEST",
            "Environment": {"Variables": dict(self.environment)},
            "PackageType": self.package_type,
            "Architectures": [self.architecture],
            "State": "Active",
            "LastUpdateStatus": "Successful",
        }
