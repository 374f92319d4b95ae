"""The runtime's commands, registered on ``moeopt`` by ``moeopt/cli.py``:

- ``runtime`` group: ``moeopt runtime serve`` (local Lambda API + S3), AWS provision/teardown;
- ``run_command``: ``moeopt run PLAN.json --backend local|aws``;
- ``calibrate_command``: ``moeopt calibrate --backend local -o PROFILE.json``;
- ``validate_command``: ``moeopt validate --backend local``.
"""

from __future__ import annotations

from lambda_runtime.commands.calibrate import calibrate_command
from lambda_runtime.commands.common import RuntimeInputError, runtime_model
from lambda_runtime.commands.run import run_command
from lambda_runtime.commands.serve import runtime
from lambda_runtime.commands.validate import validate_command

__all__ = [
    "RuntimeInputError",
    "calibrate_command",
    "run_command",
    "runtime",
    "runtime_model",
    "validate_command",
]
