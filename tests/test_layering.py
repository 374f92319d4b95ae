"""The packages import along the flow, checked on the source (AST), every import statement:

    cost_models  <-  moeopt  <-  solvers          lambda_runtime reads plan files
                                                   (never solver internals)

- ``cost_models`` imports nothing from ``moeopt``, ``solvers`` or ``lambda_runtime``;
- ``moeopt`` has no import statement of ``solvers`` or ``lambda_runtime``, at module level or in
  a function. It reaches them only through names: the registry resolves ``"module:Class"``
  strings (``BUILTIN_SOLVERS``, entry points) with importlib, and the CLI registers the runtime's
  commands from a ``module -> command`` table (``moeopt.cli.OPTIONAL_COMMANDS``), failing loudly;
- a ``solvers`` module imports no other solver family, public or private, except the shared
  helpers in :data:`SHARED_HELPERS`. A family is a module's name up to its first ``_``
  (``_ilp_model`` and ``_ilp_tables`` belong to ``ilp``; ``nevergrad_solver`` is ``nevergrad``);
- ``lambda_runtime`` imports nothing from ``solvers``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cost_models", "moeopt", "solvers", "lambda_runtime", "reproduce")
# reproduce/ (the paper's evaluation) is the top layer: it solves (solvers) and measures
# (lambda_runtime), so it may import every package and none may import it; `moeopt reproduce`
# reaches it through the CLI's command table, like the runtime's commands.
FORBIDDEN = {
    "cost_models": {"moeopt", "solvers", "lambda_runtime", "reproduce"},
    "moeopt": {"solvers", "lambda_runtime", "reproduce"},
    "lambda_runtime": {"solvers", "reproduce"},
    "solvers": {"reproduce"},  # across families: see family rule
    "reproduce": set(),
}
# Shared by several families: per-expert option tables; the Bayesian-optimisation pieces of
# bayes-egreedy and Alg. 2 (GP, expected improvement, the epsilon schedule); the per-layer
# cost-vs-time curves whose Lagrangian path warm-starts bayes, nevergrad and optuna.
SHARED_HELPERS = {"solvers._options", "solvers._bayesopt", "solvers.layer_curves"}

# Known violations, each being removed by the branch named (issue 16). The lead empties this
# list as they land; an entry that no longer occurs fails the test too, so it cannot go stale.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def family(module: str) -> str:
    """``solvers._ilp_model`` -> ``ilp``; ``solvers.nevergrad_solver`` -> ``nevergrad``."""
    return module.split(".")[1].lstrip("_").split("_")[0]


def imports_of(path: Path, root: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import statement in ``path``."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((module, node.lineno))
            out += [(f"{module}.{a.name}", node.lineno) for a in node.names if module in ("solvers", "moeopt")]
    return out


def violations(root: Path) -> set[tuple[str, str, int]]:
    """(file, imported module, line) of every import against the flow under ``root``."""
    found = set()
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            me = ".".join(path.relative_to(root).with_suffix("").parts)
            for module, line in imports_of(path, root):
                top = module.split(".")[0]
                across_families = (pkg == "solvers" and top == "solvers" and "." in module
                                   and not me.endswith("__init__") and module not in SHARED_HELPERS
                                   and family(module) != family(me))
                if top in FORBIDDEN[pkg] or across_families:
                    found.add((rel, module, line))
    return found


def test_imports_follow_the_flow():
    found = violations(ROOT)
    unexpected = sorted(v for v in found if (v[0], v[1]) not in KNOWN_VIOLATIONS)
    assert not unexpected, "imports against the flow (file, module, line):\n" + "\n".join(map(str, unexpected))
    stale = KNOWN_VIOLATIONS - {(f, m) for f, m, _ in found}
    assert not stale, f"fixed: remove from KNOWN_VIOLATIONS: {sorted(stale)}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_check_catches_each_kind_of_back_import(tmp_path):
    root = _tree(tmp_path, {
        "cost_models/constants.py": "from moeopt.errors import InputError\n",
        "moeopt/registry.py": "def f():\n    from solvers.ilp import IlpSolver\n",
        "moeopt/cli.py": "import lambda_runtime.cli\n",
        "moeopt/problem.py": "from .builtin import x\nfrom moeopt import solver\n",
        "solvers/nevergrad_solver.py": "from solvers.bayes import structured_design\n",
        "solvers/greedy.py": "from solvers._ilp_tables import Tables\nfrom solvers import _options\n",
        "solvers/ilp.py": "from solvers._ilp_model import solve\nfrom ._ilp_tables import build\n",
        "lambda_runtime/run.py": "from solvers.greedy import GreedySolver\n",
    })
    assert {(f, m) for f, m, _ in violations(root)} == {
        ("cost_models/constants.py", "moeopt.errors"),
        ("moeopt/registry.py", "solvers.ilp"),
        ("moeopt/cli.py", "lambda_runtime.cli"),
        ("solvers/nevergrad_solver.py", "solvers.bayes"),
        ("solvers/greedy.py", "solvers._ilp_tables"),
        ("lambda_runtime/run.py", "solvers.greedy"),
    }


def test_family_names():
    assert family("solvers._ilp_model") == family("solvers.ilp") == "ilp"
    assert family("solvers.nevergrad_solver") == "nevergrad" != family("solvers.bayes")
