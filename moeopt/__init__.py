"""moeopt: the cheapest serverless deployment of Mixture-of-Experts inference, with proof.

The main names are importable from here, loaded on first use (``import moeopt`` itself
imports nothing heavy)::

    import moeopt

    problem = moeopt.load_problem("bert-moe-4")
    result = moeopt.solve(problem, "greedy")
    print(moeopt.evaluate(problem, result.plan).cost_usd)
    print(moeopt.compare(problem, ["greedy", "lambdaml"]))

``moeopt.evaluate`` and ``moeopt.compare`` are both a module and a function: the modules are
callable, and calling one calls the function of the same name inside it
(``moeopt.evaluate(problem, plan)`` is ``moeopt.evaluate.evaluate(problem, plan)``), so
``import moeopt.evaluate as m``, ``from moeopt.evaluate import evaluate_batch`` and patching
``moeopt.evaluate.evaluate_batch`` all keep their usual meaning.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # problems
    "DeploymentProblem": "moeopt.problem",
    "load_problem": "moeopt.problem",
    "problem_from_dict": "moeopt.problem",
    "read_problem_file": "moeopt.problem",
    "builtin_problem": "moeopt.builtin_problems",
    "BUILTIN_PROBLEMS": "moeopt.builtin_problems",
    # plans and their I/O
    "DeploymentPlan": "moeopt.plan",
    "PlanArrays": "moeopt.plan",
    "load_plan": "moeopt.plan",
    "plan_from_dict": "moeopt.plan",
    "check_plan": "moeopt.plan",
    # pricing
    "evaluate_batch": "moeopt.evaluate",
    "Evaluation": "moeopt.evaluate",
    "EvaluationBatch": "moeopt.evaluate",
    # the solver API (docs/solver-api.md)
    "Solver": "moeopt.solver",
    "AskTellSolver": "moeopt.solver",
    "Budget": "moeopt.solver",
    "BudgetExhausted": "moeopt.solver",
    "Outcome": "moeopt.solver",
    "SolveResult": "moeopt.solver",
    "SolverStatus": "moeopt.solver",
    "SolutionStatus": "moeopt.solver",
    "Tracker": "moeopt.solver",
    "PlanSpace": "moeopt.space",
    # the registry, solving and comparing
    "list_solvers": "moeopt.registry",
    "make_solver": "moeopt.registry",
    "get_solver_class": "moeopt.registry",
    "solve": "moeopt.compare",
    "Comparison": "moeopt.compare",
    # errors a caller may catch
    "InputError": "moeopt.errors",
    "InfeasibleError": "moeopt.errors",
}

# Submodules that are also the main function of their name (see the module docstring).
_CALLABLE_MODULES = ("evaluate", "compare")

__all__ = ["__version__", *_EXPORTS, *_CALLABLE_MODULES]


class _CallableModule(types.ModuleType):
    """A module whose call is the call of its function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """The package: when the import system sets ``moeopt.evaluate``/``moeopt.compare`` to the
    submodule just loaded, that submodule becomes callable."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")  # sets the (callable) attribute
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moeopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


sys.modules[__name__].__class__ = _Package
for _name in _CALLABLE_MODULES:  # loaded before this point (e.g. by a submodule's import)
    _loaded = sys.modules.get(f"{__name__}.{_name}")
    if _loaded is not None and type(_loaded) is types.ModuleType:
        _loaded.__class__ = _CallableModule
