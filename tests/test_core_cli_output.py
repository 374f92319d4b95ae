"""What the CLI prints: tables from the library, no HiGHS banner, no progress frames in a file,
commands that cannot load said loudly, budgets said plainly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

import moeopt.compare as compare_module
from moeopt.cli import OPTIONAL_COMMANDS, cli, register_commands

ROOT = Path(__file__).resolve().parents[1]


def moeopt(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "moeopt.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_no_command_shows_the_highs_banner(tmp_path):
    from moeopt.testing import tiny_problem

    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps(tiny_problem().spec))
    for args in (("solvers", "list"), ("solve", "--problem", str(tiny), "--solver", "ilp"),
                 ("compare", "--problem", str(tiny), "--solvers", "ilp-ods,lambdaml")):
        done = moeopt(*args)
        assert done.returncode == 0, done.stderr
        assert "HiGHS" not in done.stdout + done.stderr, args
        assert "THIRD_PARTY_NOTICES" not in done.stdout + done.stderr


def test_compare_draws_no_progress_frames_into_a_redirected_stderr():
    done = moeopt("compare", "--problem", "bert-moe-4", "--solvers", "greedy,random", "--seeds", "2",
                  "--budget-evals", "200")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "solving" not in done.stderr


def test_compare_output_is_the_library_results_text(monkeypatch):
    seen = []
    real = compare_module.compare

    def spy(*args, **kw):
        seen.append(real(*args, **kw))
        return seen[-1]

    monkeypatch.setattr(compare_module, "compare", spy)
    r = CliRunner().invoke(cli, ["compare", "--problem", "bert-moe-4", "--solvers", "greedy,lambdaml",
                                 "--budget-evals", "300"])
    assert r.exit_code == 0, r.output
    assert r.stdout == str(seen[0]) + "\n"
    lines = r.stdout.splitlines()
    assert lines[0] == "bert-moe-4: time limit 34.1 s, 1 seed(s), budget 300 evaluations"
    assert lines[1].split()[:3] == ["solver", "cost", "USD"]
    assert lines[3].split()[0] == "greedy" and lines[4].split()[0] == "lambdaml"


def test_compare_all_runs_every_available_solver(monkeypatch):
    from moeopt.registry import list_solvers

    ran = []
    monkeypatch.setattr(compare_module, "make_solver", lambda name, **kw: ran.append(name) or _Stub())
    r = CliRunner().invoke(cli, ["compare", "--problem", "bert-moe-4", "--solvers", "all", "--json"])
    assert r.exit_code == 0, r.output
    assert ran == [e.name for e in list_solvers() if e.available]


class _Stub:
    """Stands in for a solver: returns a feasible-looking result at once."""

    def solve(self, problem, budget=None):
        from moeopt.registry import make_solver
        from moeopt.solver import Budget

        return make_solver("lambdaml").solve(problem, budget or Budget(evaluations=1))


def test_a_command_module_that_does_not_load_is_said_not_swallowed():
    group = click.Group("g")
    broken = register_commands(group, {
        "moeopt.no_such_module": {"runtime": "runtime", "run_command": "run"},
        "moeopt.bench.cli": {"bench_command": "bench", "renamed_command": "renamed"},
    })
    assert broken == ["runtime", "run", "renamed"]
    assert set(group.commands) == {"runtime", "run", "bench", "renamed"}
    r = CliRunner().invoke(group, ["run", "plan.json", "--backend", "local"])
    assert r.exit_code == 1
    assert "moeopt run: moeopt.no_such_module does not load: ModuleNotFoundError" in r.stderr
    r = CliRunner().invoke(group, ["renamed"])
    assert r.exit_code == 1 and "has no command 'renamed_command'" in r.stderr
    assert "BROKEN" in CliRunner().invoke(group, ["--help"]).output


def test_every_optional_command_loads_here():
    assert register_commands(click.Group("g"), OPTIONAL_COMMANDS) == []
    for commands in OPTIONAL_COMMANDS.values():
        for name in commands.values():
            assert "BROKEN" not in (cli.commands[name].help or ""), name


def test_solve_says_which_budget_stopped_it():
    r = CliRunner().invoke(cli, ["solve", "--problem", "bert-moe-4", "--solver", "random"])
    assert r.exit_code == 0, r.output
    assert "5,000 evaluations (budget 5,000 evaluations, 60 s, the solver's default)" in r.stdout
    assert "stopped by random's default budget (5,000 evaluations, 60 s)" in r.stdout
    r = CliRunner().invoke(cli, ["solve", "--problem", "bert-moe-4", "--solver", "random",
                                 "--budget-evals", "6400", "--json"])
    data = json.loads(r.stdout)
    assert data["evaluations"] == 6400
    assert data["budget"] == {"evaluations": 6400, "seconds": None, "source": "given"}


def test_tables_fit_the_terminal_and_keep_lines_whole_in_a_pipe():
    from moeopt.tables import render, table

    t = table(("name", "origin", "state"), [("x", "o" * 120, "error: " + "why " * 40)])
    narrow = render(t, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "o" * 120 in render(t).replace("\n", "") and len(render(t).splitlines()) == 3
