"""docs/solver-api.md runs: its Python blocks execute top to bottom in one namespace, and the
solver it builds passes the shipped conformance kit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moeopt.testing import SolverConformance

DOC = Path(__file__).resolve().parents[1] / "docs" / "solver-api.md"


@pytest.fixture(scope="module")
def doc_namespace() -> dict:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 10
    namespace: dict = {"__name__": "solver_api_doc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}#block{i}", "exec"), namespace)
    return namespace


def test_the_doc_runs(doc_namespace, capsys):
    assert doc_namespace["result"].plan is not None
    assert "TestHillClimber" in doc_namespace


class TestDocHillClimber(SolverConformance):
    @pytest.fixture
    def solver(self, doc_namespace):
        return doc_namespace["HillClimber"]


class TestDocCheapestEverywhere(SolverConformance):
    @pytest.fixture
    def solver(self, doc_namespace):
        return doc_namespace["CheapestEverywhere"]
