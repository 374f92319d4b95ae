"""Which process is at the other end of a loopback connection (Linux ``/proc``).

An execution environment's Runtime API listens on 127.0.0.1, where any local process can
connect; on Lambda only the function's own runtime can reach it. Without a check another
process could take the next event (its payload), answer for the function, or fail its init. The
Runtime API therefore serves only connections whose socket is held by the environment's worker
process: the connection's inode from ``/proc/net/tcp`` must be one of the worker's open files.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable

_LOOPBACK = f"{struct.unpack('=I', socket.inet_aton('127.0.0.1'))[0]:08X}"


def connection_inode(sock: socket.socket) -> int | None:
    """The inode of the client's end of a loopback TCP connection accepted as ``sock``."""
    try:
        client_port = sock.getpeername()[1]
        server_port = sock.getsockname()[1]
        with open("/proc/net/tcp") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return None
    client = f"{_LOOPBACK}:{client_port:04X}"
    server = f"{_LOOPBACK}:{server_port:04X}"
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == client and fields[2] == server:
            return int(fields[9])
    return None


def held_by(sock: socket.socket, pids: Iterable[int | None]) -> bool:
    """Whether the client's end of ``sock`` is an open file of one of ``pids``."""
    inode = connection_inode(sock)
    if inode is None or inode == 0:
        return False
    target = f"socket:[{inode}]"
    for pid in pids:
        if pid is None:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
            except OSError:
                continue
    return False
