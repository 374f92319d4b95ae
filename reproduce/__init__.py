"""The paper's evaluation, predicted by the model and measured on the local backend, and the
break-even between Lambda and an always-on CPU cluster (``moeopt reproduce``, ``moeopt
breakeven``; docs/reproduce.md).

A package of its own, above the library: it uses moeopt (problems, evaluation, the solver
registry), the runtime (the local backend, for the measured experiments) and plots, which the
layering keeps out of ``moeopt`` itself.

>>> from reproduce.config import Config
>>> cfg = Config.quick_preset(only=("calibration",))
>>> cfg.quick, cfg.measure
(True, False)
"""
