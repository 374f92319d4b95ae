"""Errors a user can cause, each one clear line: which file, which field, what is allowed."""

from __future__ import annotations

from cost_models.errors import InputError

__all__ = ["InfeasibleError", "InputError", "report_input_errors"]


class InfeasibleError(ValueError):
    """No plan can meet the problem's constraints; ``constraint`` names the one that binds."""

    def __init__(self, constraint: str, message: str) -> None:
        self.constraint = constraint
        self.message = message
        super().__init__(f"infeasible ({constraint}): {message}")


def report_input_errors(group_cls: type) -> type:
    """A click Group subclass whose commands print InputError as one line and exit 2
    (InfeasibleError: exit 3), never a traceback. Click stays out of this module's imports."""

    class _Group(group_cls):  # type: ignore[misc, valid-type]
        def invoke(self, ctx):  # noqa: ANN001, ANN202
            import click

            try:
                return super().invoke(ctx)
            except InputError as exc:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(2)
            except InfeasibleError as exc:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(3)

    return _Group
