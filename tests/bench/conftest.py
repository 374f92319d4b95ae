"""Shared fixtures: a one-instance suite that solves in well under a second, and a plugin
site (the example solver package plus two misbehaving solvers) installed with pip --target."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = ROOT / "benchmarks" / "suites" / "smoke" / "synth-z1-t0.6-n10240.json"

BAD_SOLVERS = '''
"""Two solvers that misbehave on purpose: one kills its process, one never returns."""
import os
import time

from moeopt.solver import Solver


class Crasher(Solver):
    name = "crasher"

    def _solve(self, problem, tracker):
        os._exit(3)  # no exception to catch: the process just dies


class Sleeper(Solver):
    name = "sleeper"

    def _solve(self, problem, tracker):
        time.sleep(10_000)
'''

BAD_PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "moeopt-bad-solvers"
version = "0.0.1"
dependencies = ["moeopt"]

[project.entry-points."moeopt.solvers"]
crasher = "moeopt_bad_solvers:Crasher"
sleeper = "moeopt_bad_solvers:Sleeper"
'''


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """A --target folder holding moeopt-solver-example and moeopt-bad-solvers."""
    tmp = tmp_path_factory.mktemp("plugins")
    target = tmp / "site"
    example = shutil.copytree(ROOT / "examples" / "moeopt-solver-example", tmp / "example")
    bad = tmp / "bad"
    (bad / "moeopt_bad_solvers").mkdir(parents=True)
    (bad / "moeopt_bad_solvers" / "__init__.py").write_text(BAD_SOLVERS)
    (bad / "pyproject.toml").write_text(BAD_PYPROJECT)
    for src in (example, bad):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--target", str(target), str(src)],
            check=True, capture_output=True,
        )
    return target


@pytest.fixture
def tiny_suite(tmp_path) -> Path:
    """A suite folder with one small instance and a short budget."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    shutil.copy(INSTANCE, folder / INSTANCE.name)
    (folder / "suite.json").write_text(json.dumps({
        "schema": "moeopt.bench.suite/1", "name": "tiny", "seeds": 2,
        "budget": {"evaluations": 1500, "seconds": 5.0},
    }))
    return folder


def moeopt_bench(*args: str, site: Path | None = None, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """``moeopt bench|leaderboard ...`` in a fresh interpreter (PYTHONPATH: plugins, then repo)."""
    paths = ([str(site)] if site else []) + [str(ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return subprocess.run([sys.executable, "-m", "moeopt.bench.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
