"""The results file: append-only JSON Lines, one run per line, with a schema version.

Append-only (as Optuna's journal storage) so an interrupted sweep loses at most the run in
flight, and a resumed one only adds lines. Large plans (the DeepSeek-V3 instance has 14,848
functions) live beside the file as gzip, content-addressed, so the JSONL stays readable.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moeopt.errors import InputError
from moeopt.files import MAX_TRACE_BYTES, iter_lines, json_record
from moeopt.jsonout import strict

SCHEMA = "moeopt.bench.result/1"
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")
INLINE_PLAN_BYTES = 16_000
RUN_STATUSES = ("ok", "error", "crashed", "timeout")


def run_key(fingerprint: str, solver: str, seed: int, budget: dict[str, Any]) -> str:
    """What makes two runs the same run (resume skips a key already in the file)."""
    body = json.dumps([fingerprint, solver, int(seed), budget.get("evaluations"),
                       budget.get("seconds")], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append whole lines; a torn last line (a writer killed mid-line) is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(strict(record), sort_keys=True) + "\n")
            f.flush()


def _drop_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every record of a results file; a torn last line (killed writer) is skipped."""
    if not path.exists():
        raise InputError(str(path), "file", "no such results file")
    out = []
    # Through the reading layer: a regular file (never /dev/zero), size-capped, UTF-8.
    lines = [text for _, text in iter_lines(path, MAX_TRACE_BYTES)]
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json_record(line, f"{path}:{i + 1}")
        except InputError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                continue  # torn by a killed writer
            raise InputError(str(path), f"line {i + 1}", "not a valid JSON record") from None
        if record.get("schema") != SCHEMA:
            raise InputError(str(path), f"line {i + 1}.schema",
                             f"{record.get('schema')!r} not supported; allowed: {SCHEMA}")
        out.append(record)
    return out


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def validate(records: Iterable[dict[str, Any]]) -> None:
    """Check records against the JSON Schema (needs the ``jsonschema`` package)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    for i, record in enumerate(records):
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
        if errors:
            where = "/".join(map(str, errors[0].path)) or "record"
            raise InputError(f"record {i}", where, errors[0].message)


# ---- plans beside the file -------------------------------------------------------------------


def store_plan(plan: dict[str, Any] | None, folder: Path) -> dict[str, Any] | None:
    """Inline a small plan; write a large one to ``folder/plans/<sha>.json.gz`` and point at it."""
    if plan is None:
        return None
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    if len(text) <= INLINE_PLAN_BYTES:
        return plan
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    rel = f"plans/{digest}.json.gz"
    target = folder / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same plan always gives the same bytes (no churn in git).
        with gzip.GzipFile(target, "wb", mtime=0) as f:
            f.write(text.encode())
    return {"file": rel, "sha256": digest}


def load_plan_dict(stored: dict[str, Any] | None, folder: Path) -> dict[str, Any] | None:
    if stored is None:
        return None
    if "file" in stored and "layers" not in stored:
        path = folder / stored["file"]
        if not path.exists():
            raise InputError(str(path), "plan", "the results file points at a missing plan file")
        with gzip.open(path, "rt") as f:
            return json.load(f)
    return stored
