"""What the OS lets the local backend enforce: the vCPU share (cgroup cpu quota) and memory (RSS).

Lambda gives a function 1 vCPU per 1,769 MB of memory, up to 6. Here that share is a CFS quota
(cgroup v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``) when the cgroup tree is writable; otherwise
the backend says so in its status and runs the workers unthrottled.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lambda_runtime.local.cleanup import PREFIX, remove_stale_cgroups

log = logging.getLogger(__name__)

MB_PER_VCPU = 1769.0
MAX_VCPU = 6.0
PERIOD_US = 20_000  # a short CFS period: short expert bursts feel the share too


def vcpu_share(memory_mb: int) -> float:
    """Lambda's vCPU share of ``memory_mb``."""
    return min(MAX_VCPU, memory_mb / MB_PER_VCPU)


_ROOTS = itertools.count()  # numbers this process's cgroup roots


@dataclass(frozen=True)
class CpuLimitStatus:
    enforced: bool
    mechanism: str  # "cgroup-v1", "cgroup-v2" or "none"
    detail: str


class CpuLimiter:
    """Creates one cgroup per execution environment under a backend-owned parent."""

    def __init__(self, enabled: bool = True) -> None:
        self.root: Path | None = None
        self.version = 0
        self.status = CpuLimitStatus(False, "none", "disabled by configuration")
        if enabled:
            self.status = self._detect()
        if self.status.enforced:
            log.info("vCPU share enforced with %s at %s", self.status.mechanism, self.root)
        else:
            log.warning("vCPU share NOT enforced: %s", self.status.detail)

    def _detect(self) -> CpuLimitStatus:
        # One root per backend, not per process: a second backend in the same process (a CLI
        # run inside a test session) must not remove the first one's cgroups when it closes.
        name = f"{PREFIX}{os.getpid()}-{next(_ROOTS)}"
        v1 = Path("/sys/fs/cgroup/cpu")
        v2 = Path("/sys/fs/cgroup")
        candidates: list[tuple[int, Path]] = []
        if (v1 / "cpu.cfs_quota_us").exists():
            candidates.append((1, v1))
        if (v2 / "cgroup.controllers").exists() and "cpu" in (
            v2 / "cgroup.controllers"
        ).read_text():
            candidates.append((2, v2))
        reasons = []
        for version, base in candidates:
            remove_stale_cgroups(base)  # of backends that died without stopping
            root = base / name
            try:
                root.mkdir(exist_ok=True)
                if version == 2:
                    (base / "cgroup.subtree_control").write_text("+cpu")
                    (root / "cgroup.subtree_control").write_text("+cpu")
                    (root / "cpu.max").write_text(f"max {PERIOD_US}")
                else:
                    (root / "cpu.cfs_quota_us").write_text("-1")
                _raise_weight(root, version)  # the whole tree, or its functions inherit 1024
                self.root, self.version = root, version
                return CpuLimitStatus(True, f"cgroup-v{version}", str(root))
            except OSError as exc:
                reasons.append(f"cgroup v{version} at {base}: {exc.strerror or exc}")
                with contextlib.suppress(OSError):
                    root.rmdir()
        if not candidates:
            reasons.append(
                "no cgroup cpu controller mounted (/sys/fs/cgroup/cpu or cgroup2 with cpu)"
            )
        return CpuLimitStatus(False, "none", "; ".join(reasons))

    def create(self, name: str) -> Path | None:
        if self.root is None:
            return None
        path = self.root / name
        path.mkdir(exist_ok=True)
        _raise_weight(path, self.version)
        return path

    def set_share(self, path: Path | None, vcpu: float | None) -> None:
        """Apply ``vcpu`` (None: unlimited) to the cgroup at ``path``."""
        if path is None:
            return
        quota = -1 if vcpu is None else max(1000, int(vcpu * PERIOD_US))
        try:
            if self.version == 2:
                (path / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")
            else:
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as exc:
            log.warning("could not set cpu quota on %s: %s", path, exc)

    @staticmethod
    def attach_self(path: Path | None) -> None:
        """Run in the child before exec: move this process into the cgroup."""
        if path is not None:
            with open(path / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    def remove(self, path: Path | None) -> None:
        if path is None:
            return
        with contextlib.suppress(OSError):
            path.rmdir()

    def close(self) -> None:
        if self.root is not None:
            with contextlib.suppress(OSError):  # environments may be removing theirs concurrently
                for child in list(self.root.iterdir()):
                    if child.is_dir():
                        self.remove(child)
            self.remove(self.root)
            self.root = None


def _raise_weight(path: Path, version: int) -> None:
    """The quota caps a function; the highest CFS weight makes it win against the host's other
    work up to that cap, as a function's vCPUs are its own on Lambda (a cgroup at the default
    weight competes like one nice-0 task, and was measured at a quarter of its quota under load)."""
    with contextlib.suppress(OSError):
        if version == 2:
            (path / "cpu.weight").write_text("10000")
        else:
            (path / "cpu.shares").write_text("262144")


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of ``pid`` in MB (VmRSS, VmHWM); zeros if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, val = line.split(":", 1)
            values[key] = int(val.split()[0]) / 1024.0
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)
