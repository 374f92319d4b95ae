"""The registry with real entry points: two distributions written into a temporary site folder
(dist-info metadata, as pip leaves it), found by importlib.metadata in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moeopt.errors import InputError
from moeopt.registry import (
    BUILTIN_SOLVERS,
    claims,
    get_entry,
    list_solvers,
    make_solver,
    select_solvers,
)

ROOT = Path(__file__).resolve().parents[1]
LONG = "moeopt-annealing-with-a-distribution-name-far-longer-than-ten-characters"

SOLVER_MODULE = '''
from moeopt.plan import PlanArrays
from moeopt.solver import AskTellSolver


class Annealing(AskTellSolver):
    name = "{cls_name}"
    tags = frozenset({{"plugin"}})

    def _start(self, space):
        self.space = space

    def _ask(self, n):
        return self.space.sample(self.rng, n)

    def _tell(self, x, score, violation):
        pass
'''


def _distribution(site: Path, dist: str, module: str, cls_name: str, entries: dict[str, str]) -> None:
    (site / f"{module}.py").write_text(SOLVER_MODULE.format(cls_name=cls_name))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[moeopt.solvers]\n{lines}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Two distributions: both register ``annealing``; one also registers ``greedy`` (a
    built-in's name) and ``sa`` (an alias of a class named ``annealing-a``)."""
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "moeopt-annealing-a", "annealing_a", "annealing-a",
                  {"annealing": "annealing_a:Annealing", "greedy": "annealing_a:Annealing",
                   "sa": "annealing_a:Annealing"})
    _distribution(site, LONG, "annealing_b", "annealing-b", {"annealing": "annealing_b:Annealing"})
    return site


def moeopt(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "moeopt.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_name_two_distributions_register_is_one_error_naming_both(site):
    done = moeopt(site, "solvers", "list", "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    names = [e["name"] for e in entries]
    assert names.count("annealing") == 1 and names.count("greedy") == 1  # never doubled
    annealing = next(e for e in entries if e["name"] == "annealing")
    assert not annealing["available"]
    assert "moeopt-annealing-a 0.3 (annealing_a:Annealing)" in annealing["reason"]
    assert f"{LONG} 0.3 (annealing_b:Annealing)" in annealing["reason"]
    assert {c["origin"] for c in annealing["conflicts"]} == {"moeopt-annealing-a", LONG}


def test_a_plugin_reusing_a_builtin_name_is_an_error_naming_both(site):
    entries = {e["name"]: e for e in json.loads(moeopt(site, "solvers", "list", "--json").stdout)}
    greedy = entries["greedy"]
    assert not greedy["available"]  # never silently the built-in, never silently the plugin
    assert "built-in (solvers.greedy:GreedySolver)" in greedy["reason"]
    assert "moeopt-annealing-a 0.3 (annealing_a:Annealing)" in greedy["reason"]
    done = moeopt(site, "solve", "--solver", "greedy", "--problem", "bert-moe-4")
    assert done.returncode == 2 and "name collision" in done.stderr and "Traceback" not in done.stderr


def test_the_table_shows_the_collision_and_long_origins_whole(site):
    done = moeopt(site, "solvers", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0]
    assert header.split() == ["name", "origin", "tags", "state"]
    row = next(line for line in lines if line.startswith("annealing "))
    assert f"moeopt-annealing-a + {LONG}" in row and "error: name collision" in row
    # Every row's columns start where the header's do: nothing pushed out of line.
    starts = [header.index(c) for c in ("origin", "tags", "state")]
    for line in lines[2:]:
        for s in starts:
            assert line[s - 1] == " ", line
    assert "HiGHS" not in done.stderr


def test_an_alias_answers_to_its_registered_name_everywhere(site):
    listed = {e["name"]: e for e in json.loads(moeopt(site, "solvers", "list", "--json").stdout)}
    assert listed["sa"]["available"] and listed["sa"]["origin"] == "moeopt-annealing-a"
    solved = moeopt(site, "solve", "--solver", "sa", "--problem", "bert-moe-4", "--budget-evals", "64", "--json")
    assert solved.returncode == 0, solved.stderr
    assert json.loads(solved.stdout)["solver"] == "sa"
    compared = moeopt(site, "compare", "--problem", "bert-moe-4", "--solvers", "sa,lambdaml",
                      "--budget-evals", "64", "--json")
    assert [r["solver"] for r in json.loads(compared.stdout)] == ["sa", "lambdaml"]
    table = moeopt(site, "compare", "--problem", "bert-moe-4", "--solvers", "sa", "--budget-evals", "64")
    assert any(line.split()[0] == "sa" for line in table.stdout.splitlines()[3:])


def test_compare_default_set_includes_plugins_and_all_takes_every_available(site):
    env_code = (
        "from moeopt.compare import default_solvers, DEFAULT_COMPARE\n"
        "from moeopt.registry import select_solvers\n"
        "import json; print(json.dumps([default_solvers(), select_solvers('all', DEFAULT_COMPARE)]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", env_code], env=env, capture_output=True, text=True,
                          timeout=120)
    default, every = json.loads(done.stdout)
    assert "sa" in default and "annealing" not in default and "greedy" not in default
    assert {"sa", "random", "ilp-ods", "cpu-cluster"} <= set(every)
    assert "annealing" not in every and "greedy" not in every  # collisions are not available


def test_lookup_imports_only_the_named_solver():
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom moeopt.registry import make_solver\nmake_solver('random')\n"
         "print(sorted(m for m in sys.modules if m.startswith('solvers.')))"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.strip() == "['solvers.random_search']", done.stdout + done.stderr


def test_registry_in_process():
    assert list(claims())[: len(BUILTIN_SOLVERS)] == list(BUILTIN_SOLVERS)
    assert [e.name for e in list_solvers()][: len(BUILTIN_SOLVERS)] == list(BUILTIN_SOLVERS)
    assert get_entry("ilp").origin == "built-in"
    with pytest.raises(InputError, match="unknown solver"):
        get_entry("annealing-x")
    assert make_solver("ilp-ods").name == "ilp-ods"
    with pytest.raises(InputError, match="--solvers: nope: unknown solver"):
        select_solvers("greedy,nope", ())
    assert select_solvers(" greedy , random ", ()) == ["greedy", "random"]
