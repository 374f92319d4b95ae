"""Errors a user can cause, each one clear line: which file, which field, what is allowed."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (problem, plan, trace or profile file, or a CLI value).

    The CLI prints ``error: <source>: <field>: <message>`` and exits with status 2; no traceback.
    """

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        super().__init__(f"{source}: {field}: {message}")


class InfeasibleError(ValueError):
    """No plan can meet the problem's constraints; ``constraint`` names the one that binds."""

    def __init__(self, constraint: str, message: str) -> None:
        self.constraint = constraint
        self.message = message
        super().__init__(f"infeasible ({constraint}): {message}")
