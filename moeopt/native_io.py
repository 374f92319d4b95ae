"""What C libraries print to fd 1 must not mix with our stdout (``--json`` output, pipes)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what C libraries print to fd 1 (HiGHS's banner) to stderr, so stdout stays ours."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real fd 1 (e.g. under a test runner): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


_banner_discarded = False


def discard_highs_banner() -> None:
    """From now on the banner is dropped, not sent to stderr (the CLI: no command shows it)."""
    global _banner_discarded
    _banner_discarded = True


@contextlib.contextmanager
def _native_stdout_to_devnull() -> Iterator[None]:
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def highs_banner_to_stderr() -> None:
    """HiGHS prints its licence banner on the first ``Highs()`` of a process: build that one
    now with fd 1 on stderr, so a library user's stdout stays theirs (or on /dev/null once
    :func:`discard_highs_banner` was called)."""
    try:
        import highspy
    except ImportError:
        return
    with _native_stdout_to_devnull() if _banner_discarded else native_stdout_to_stderr():
        highspy.Highs()
