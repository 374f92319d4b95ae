"""Leftovers of local backends that died without stopping (SIGKILL, OOM, power): their temp
folders and cgroups are removed when the next backend starts.

Both are named after the process that made them (``moeopt-local-<pid>-...``), so a leftover is
one whose process is gone (or a zombie); a live backend's are never touched, whoever runs it.
A stale cgroup's processes (workers of the dead server) are killed before it is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "moeopt-local-"
_OWNED = re.compile(rf"{PREFIX}(\d+)-.+")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _owner(name: str) -> int | None:
    m = _OWNED.fullmatch(name)
    return int(m[1]) if m else None


def remove_stale_folders(base: Path) -> list[Path]:
    """Remove this user's ``moeopt-local-<pid>-*`` folders under ``base`` whose process is gone."""
    removed = []
    with contextlib.suppress(OSError):
        for path in base.iterdir():
            pid = _owner(path.name)
            if pid is None or pid_alive(pid):
                continue
            try:
                if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                    continue
            except OSError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    if removed:
        log.info("removed %d temp folders of dead local backends", len(removed))
    return removed


def remove_stale_cgroups(base: Path) -> list[Path]:
    """Remove the ``moeopt-local-<pid>-<n>`` cgroups under ``base`` whose process is gone, after
    killing what still runs in them."""
    removed = []
    with contextlib.suppress(OSError):
        for root in base.iterdir():
            pid = _owner(root.name)
            if pid is None or pid_alive(pid) or not root.is_dir():
                continue
            for child in [c for c in root.iterdir() if c.is_dir()]:
                _empty_and_remove(child)
            _empty_and_remove(root)
            if not root.exists():
                removed.append(root)
    if removed:
        log.info("removed %d cgroups of dead local backends", len(removed))
    return removed


def _empty_and_remove(cgroup: Path) -> None:
    for _ in range(50):
        try:
            pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # killed processes leave the cgroup a moment later
