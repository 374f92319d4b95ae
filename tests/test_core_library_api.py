"""The library as a user meets it: ``import moeopt``, the README's examples run as written, the
example plugin works straight from its folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks of one section (from its heading to the next of the same level)."""
    level = len(section) - len(section.lstrip("#"))
    start = markdown.index(section + "\n")
    rest = markdown[start + len(section):]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    body = rest[: end.start()] if end else rest
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_readme_library_section_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks((ROOT / "README.md").read_text(), "## Library")
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md#library", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "feasible" in out and "solver" in out and "greedy" in out
    assert (tmp_path / "plan.json").exists()


def test_readme_solver_section_runs(capsys):
    blocks = python_blocks((ROOT / "README.md").read_text(), "### Add a solver")
    assert len(blocks) == 2
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md#add-a-solver", "exec"), namespace)
    assert capsys.readouterr().out.split() == ["completed", "feasible", "112"]
    assert namespace["TestUniformGrid"]  # the kit class the README shows


def test_every_exported_name_resolves():
    import moeopt

    for name in moeopt.__all__:
        assert getattr(moeopt, name) is not None, name
    assert set(moeopt.__all__) <= set(dir(moeopt))
    with pytest.raises(AttributeError):
        moeopt.no_such_name  # noqa: B018


def test_evaluate_and_compare_are_callable_modules_that_keep_module_semantics():
    import importlib

    import moeopt
    import moeopt.evaluate as evaluate_module
    from moeopt.evaluate import evaluate as evaluate_function

    assert moeopt.evaluate is evaluate_module is importlib.import_module("moeopt.evaluate")
    problem = moeopt.load_problem("bert-moe-4")
    plan = moeopt.DeploymentPlan.uniform(problem, 1536, 2)
    assert moeopt.evaluate(problem, plan) == evaluate_function(problem, plan)
    assert moeopt.compare.Comparison is moeopt.Comparison


def test_import_moeopt_is_light():
    code = "import sys, moeopt\nprint(sorted(m for m in ('numpy', 'rich', 'click', 'solvers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_example_plugin_finds_a_feasible_plan_within_its_default_budget(monkeypatch):
    """Straight from its folder, nothing installed."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "moeopt-solver-example"))
    from moeopt_solver_example import CoordinateDescent

    import moeopt

    result = CoordinateDescent(seed=0).solve(moeopt.load_problem("bert-moe-4"))
    assert result.budget_source == "default" and str(result.solver_status) == "completed"
    assert str(result.solution_status) == "feasible" and result.evaluation.feasible
    assert result.evaluations <= CoordinateDescent.default_budget.evaluations
