"""One line per problem, never a traceback: how the local backend's processes report.

A traceback on a user's terminal reads as a crash of moeopt; a worker that dies, a client that
drops its connection or a thread that fails is an event to state in one line (what, where, why).
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType


class OneLineFormatter(logging.Formatter):
    """``prefix: message: Type: exception`` on one line (an exception's traceback is dropped)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {one_line(record.exc_info[1])}"
        return f"{self.prefix}: {text}"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def quiet_threads(prefix: str) -> None:
    """A thread that dies prints one line on stderr, not a traceback."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "thread"
        print(f"{prefix}: {name}: {one_line(args.exc_value)}", file=sys.stderr, flush=True)

    threading.excepthook = hook


def quiet_process(prefix: str, level: int = logging.WARNING) -> None:
    """Logging, threads and the main thread of a backend process report in one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(prefix))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_threads(prefix)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            return
        print(f"{prefix}: {one_line(exc)}", file=sys.stderr, flush=True)

    sys.excepthook = excepthook
