"""The HTML report in a real headless browser, and the optional distributed executors."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import pytest

from moeopt.bench.results import read_results, validate
from tests.bench.conftest import ROOT, moeopt_bench

render_check = runpy.run_path(str(ROOT / "benchmarks" / "render_check.py"))


@pytest.mark.skipif(render_check["chromium"]() is None,
                    reason="needs Debian's chromium (apt-get install -y chromium) for the headless check")
def test_html_report_renders_with_its_plots_in_chromium(tiny_suite, tmp_path):
    out = tmp_path / "r"
    assert moeopt_bench("bench", "--suite", str(tiny_suite), "--solvers", "greedy,eplb,lambdaml",
                        "--seeds", "1", "--jobs", "2", "--out", str(out)).returncode == 0
    page = tmp_path / "board.html"
    assert moeopt_bench("leaderboard", str(out / "tiny.jsonl"), "--html", str(page)).returncode == 0
    shot = tmp_path / "shot.png"
    report = render_check["check"](page, shot, min_plots=5)
    assert report.ok, report.problems
    assert report.png_images == 5 and report.distinct_colours > 50
    assert shot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("executor, module", [("dask", "distributed"), ("ray", "ray")])
def test_distributed_executor_runs_the_same_isolated_runs(executor, module, tiny_suite, tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f'the {executor} executor test needs pip install "{module}"')
    done = moeopt_bench("bench", "--suite", str(tiny_suite), "--solvers", "greedy,lambdaml", "--seeds", "1",
                        "--executor", executor, "--jobs", "2", "--out", str(tmp_path / "d"))
    assert done.returncode == 0, done.stderr
    records = read_results(Path(tmp_path / "d" / "tiny.jsonl"))
    validate(records)
    assert sorted(r["solver"]["name"] for r in records) == ["greedy", "lambdaml", "random"]
    assert all(r["status"] == "ok" for r in records)


def test_ray_executor_without_ray_is_a_clear_error(tiny_suite, tmp_path):
    # a package named ray that fails to import shadows an installed Ray, as if it were absent
    shadow = tmp_path / "site"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text('raise ImportError("no ray here")\n')
    done = moeopt_bench("bench", "--suite", str(tiny_suite), "--executor", "ray",
                        "--out", str(tmp_path / "out"), site=shadow)
    assert done.returncode == 2 and "needs the ray package: pip install ray" in done.stderr
