"""Build the one C extension (ilp's compiled pricing); everything else is in pyproject.toml.

``optional=True``: where no C compiler is found the install still succeeds and ilp runs its
numpy pricing instead (same configurations, slower on small problems)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "solvers._ilp_cprice",
            ["solvers/_ilp_cprice.c"],
            # No fused multiply-add: numpy rounds every product, and the floats must match.
            extra_compile_args=["-O2", "-ffp-contract=off", "-pthread"],
            extra_link_args=["-pthread"],  # the dominance pass runs on two threads
            optional=True,
        )
    ]
)
