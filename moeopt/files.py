"""The reading layer for user files (JSON or TOML documents): size-capped, UTF-8, clear errors."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from moeopt.errors import InputError

MAX_DOCUMENT_BYTES = 64 * 2**20


def read_document(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """A JSON or TOML file (by suffix) as Python data; InputError on any problem."""
    path = Path(path)
    source = str(path)
    try:
        if not path.is_file():
            raise InputError(source, "file", "not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise InputError(source, "file", f"larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(source, "file", "not UTF-8 text") from None
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise InputError(source, "file", f"not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
