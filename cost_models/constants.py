"""Platform constants: one data file with sources, overridable by a user's profile file."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cost_models.errors import InputError

_DATA_FILE = "constants.toml"


@dataclass(frozen=True)
class Ec2Instance:
    """One on-demand EC2 instance type of the CPU-cluster catalogue."""

    name: str
    usd_per_hour: float
    vcpu: int
    memory_gib: float
    physical_cores: int


@dataclass(frozen=True)
class CostConstants:
    """Every number the cost and latency model uses; field names match the data file's keys."""

    lambda_price_x86_64_usd_per_gb_s: float
    lambda_price_arm64_usd_per_gb_s: float
    lambda_request_usd: float
    lambda_billing_granularity_ms: float
    lambda_memory_min_mb: int
    lambda_memory_max_mb: int
    lambda_mb_per_vcpu: float
    lambda_max_vcpu: float
    lambda_payload_limit_bytes: float
    lambda_payload_encoding_overhead: float
    lambda_payload_envelope_bytes: float
    lambda_timeout_max_s: float
    lambda_concurrency_limit: int
    storage_put_usd: float
    storage_get_usd: float
    storage_bandwidth_bytes_per_s: float
    storage_delay_s: float
    function_bandwidth_bytes_per_s: float
    warm_start_s: float
    cold_start_s: float
    flops_per_second_per_vcpu: float
    multi_vcpu_efficiency: float
    nonmoe_flops_per_second: float
    storage_cpu_s_per_byte: float
    payload_cpu_s_per_byte: float
    nonmoe_payload_cpu_s_per_byte: float
    arm64_speed_factor: float
    runtime_overhead_mb: float
    nonmoe_memory_mb: int
    cpu_cluster_instance: str
    cpu_cluster_flops_per_second_per_core: float
    cpu_cluster_min_billed_s: float
    ec2_catalogue: dict[str, Ec2Instance] = field(default_factory=dict, compare=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    profile: str = "built-in"

    @classmethod
    def names(cls) -> list[str]:
        """The overridable constant names (what a profile file may set)."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in _META_FIELDS]

    def with_overrides(self, overrides: dict[str, Any], source: str) -> CostConstants:
        """A copy with ``overrides`` applied; unknown names or wrong types are an InputError."""
        allowed = self.names()
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in allowed:
                raise InputError(
                    source, f"constants.{key}", f"unknown constant; allowed: {', '.join(allowed)}"
                )
            current = getattr(self, key)
            if isinstance(current, str):
                if not isinstance(value, str):
                    raise InputError(source, f"constants.{key}", "must be a string")
                if value not in self.ec2_catalogue:
                    raise InputError(
                        source,
                        f"constants.{key}",
                        f"unknown instance; allowed: {', '.join(sorted(self.ec2_catalogue))}",
                    )
                changes[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(source, f"constants.{key}", f"must be a number, got {value!r}")
            if value < 0 or value != value:
                raise InputError(source, f"constants.{key}", f"must be >= 0, got {value!r}")
            changes[key] = type(current)(value) if isinstance(current, int) else float(value)
        if not changes:
            return self
        return dataclasses.replace(self, **changes, profile=source)

    def cpu_cluster(self) -> Ec2Instance:
        return self.ec2_catalogue[self.cpu_cluster_instance]


_META_FIELDS = {"ec2_catalogue", "sources", "profile"}


def _load_builtin() -> CostConstants:
    text = resources.files("cost_models.data").joinpath(_DATA_FILE).read_text()
    raw = tomllib.loads(text)
    catalogue = {
        name: Ec2Instance(name=name, **spec) for name, spec in raw.pop("ec2_catalogue").items()
    }
    values = {name: entry["value"] for name, entry in raw.items()}
    sources = {name: f"{entry['source']} ({entry['date']})" for name, entry in raw.items()}
    return CostConstants(**values, ec2_catalogue=catalogue, sources=sources)


DEFAULT_CONSTANTS = _load_builtin()


PROFILES_PACKAGE = "cost_models.data.profiles"


def builtin_profiles() -> dict[str, str]:
    """Built-in profiles by name: their text (TOML), e.g. ``paper-lambda``."""
    folder = resources.files(PROFILES_PACKAGE)
    return {
        entry.name.removesuffix(".toml"): entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def read_profile(path: str | Path) -> dict[str, Any]:
    """Read a profile file (JSON or TOML) and return its ``constants`` table."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(source, "file", f"not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("constants"), dict):
        raise InputError(source, "constants", "a profile needs a 'constants' table of name: value")
    return data["constants"]


def load_constants(profile: str | Path | None = None) -> CostConstants:
    """The built-in constants, with a user's profile file applied when given."""
    if profile is None:
        return DEFAULT_CONSTANTS
    return DEFAULT_CONSTANTS.with_overrides(read_profile(profile), str(profile))
