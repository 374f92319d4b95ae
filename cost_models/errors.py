"""The one error a user can cause anywhere in moeopt: bad input, named by file and field.

It lives here, at the bottom of the package flow (cost_models <- moeopt <- solvers), so that
cost_models can reject a bad profile without importing the domain package; ``moeopt.errors``
re-exports it.
"""

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
