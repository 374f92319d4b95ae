"""Cost-model profiles: a named or file set of constants that replaces the built-in ones.

A profile is ``{"constants": {name: value}}`` (JSON or TOML) with anything else beside it
(fits, measurements, assumptions). Built-in profiles live in ``cost_models/data/profiles/``:
``paper-lambda`` is fitted to the paper's one absolute figure (docs/cost-model.md). A file
written by ``moeopt calibrate`` is a profile too. Every command that builds a problem takes
``--profile NAME|FILE``; a problem file names one in ``cost_model.profile``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cost_models.constants import builtin_profiles
from moeopt.errors import InputError


@dataclass(frozen=True)
class Profile:
    """A profile's constants and where they came from (a built-in name or a file path)."""

    source: str
    constants: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def profile_names() -> list[str]:
    return sorted(builtin_profiles())


def read_profile(name_or_path: str | Path, base_dir: Path | None = None) -> Profile:
    """A built-in profile by name, else a profile file (JSON or TOML)."""
    text = str(name_or_path)
    builtins = builtin_profiles()
    if text in builtins:
        return _parse(tomllib.loads(builtins[text]), text)
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise InputError(
            text, "profile",
            f"no such profile file or built-in profile; built-ins: {', '.join(sorted(builtins))}",
        )
    from moeopt.files import read_document  # the one reading layer for user files

    return _parse(read_document(path), str(path))


def _parse(data: Any, source: str) -> Profile:
    if not isinstance(data, dict) or not isinstance(data.get("constants"), dict):
        raise InputError(source, "constants", "a profile needs a 'constants' table of name: value")
    return Profile(source, dict(data["constants"]), data)


def apply_profile(problem: Any, profile: str | Path | Profile | None) -> Any:
    """``problem`` with the profile's constants (None: unchanged)."""
    if profile is None:
        return problem
    prof = profile if isinstance(profile, Profile) else read_profile(profile)
    constants = problem.constants.with_overrides(prof.constants, prof.source)
    return problem.with_constants(constants)


def dumps_profile(profile: dict[str, Any]) -> str:
    """A profile as JSON (strict: no NaN or Infinity)."""
    return json.dumps(profile, indent=2, allow_nan=False) + "\n"
