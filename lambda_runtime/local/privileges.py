"""What a function's process may not do to its host, beyond its environment variables.

A function runs as the server's user. Two Linux mechanisms keep it away from the secrets in
the environment of the processes that started it (``/proc/<pid>/environ``):

- those processes (the one that starts a local backend, and so ``moeopt runtime serve``) are
  made non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): their ``/proc`` files then need
  ``CAP_SYS_PTRACE`` to read, even for their own user;
- every worker drops all capabilities (bounding set, then ``capset`` to nothing) and sets
  ``no_new_privs`` before the function's code runs, so a server running as root does not hand
  ``CAP_SYS_PTRACE`` (or ``CAP_DAC_OVERRIDE``) to the functions.

The service, S3 and fork-server processes start with a clean environment, so there is nothing
to read in theirs. What this does not cover: other processes of the same user that moeopt did not
start (a shell's environment) and that user's files; docs/runtime.md says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

PR_CAPBSET_DROP = 24
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


# Loaded once, in the parent: a worker's child between fork and exec only calls into it
# (a dlopen there could wait on a lock another of the parent's threads held at fork time).
_LIBC = ctypes.CDLL(None, use_errno=True)


def clean_environment(python_path: str, home: str | None = None) -> dict[str, str]:
    """The backend's own processes' variables (fork server, service, S3): none of the host's
    but ``LD_LIBRARY_PATH`` (the interpreter may need it) and ``TMPDIR`` (where leftovers of
    dead servers are looked for)."""
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
           "PYTHONPATH": python_path, "LANG": "C.UTF-8"}
    if home:
        env["HOME"] = home
    for name in ("LD_LIBRARY_PATH", "TMPDIR"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def protect_this_process() -> bool:
    """Make this process's ``/proc`` files (its environment among them) unreadable to other
    processes without ``CAP_SYS_PTRACE``. Returns whether it took."""
    try:
        return _LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except AttributeError:  # a libc without prctl (not Linux)
        return False


def drop_privileges() -> None:
    """In a worker, before the function's code: no capabilities now or after an exec, and no
    way back through set-uid programs. Runs in a child between fork and exec: libc is already
    loaded."""
    libc = _LIBC
    # The bounding set: what an exec may grant (all of it, for root). EINVAL: past the kernel's
    # last capability; EPERM (not root): this process may not change it, and has nothing to drop.
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: no effective, permitted or inheritable capability
    libc.capset(ctypes.byref(header), data)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
