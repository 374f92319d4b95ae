"""Errors a user can cause, each one clear line: which file, which field, what is allowed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cost_models.errors import InputError

__all__ = ["FieldError", "InfeasibleError", "InputError", "errors_in", "report_input_errors"]


class FieldError(InputError):
    """A value a dataclass refuses (``ModelSpec(moe_layers=0)``), before any file is named.

    Library users see ``ModelSpec: moe_layers: ...``; a file reader re-labels it with
    :func:`errors_in` to ``problem.toml: model.moe_layers: ...``, so files and code share one
    validation.
    """


@contextmanager
def errors_in(source: str, prefix: str | Callable[[str], str] = "") -> Iterator[None]:
    """Re-label :class:`FieldError` raised inside as an error of ``source`` at ``prefix+field``
    (or at ``prefix(field)`` when ``prefix`` maps a dataclass field to the file's path).

    Errors that already name a file (an ``InputError`` of a counts file a problem points at)
    pass through unchanged.
    """
    try:
        yield
    except FieldError as exc:
        where = prefix(exc.field) if callable(prefix) else f"{prefix}{exc.field}"
        raise InputError(source, where, exc.message) from None


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
