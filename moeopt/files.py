"""The one reading layer for every user file: problems, plans, counts, loads, traces, profiles.

Every reader in moeopt opens user files through here, so the same guarantees hold everywhere
(docs/problem-format.md, "Limits"):

- only regular files are read, never a device, FIFO or socket, and never more than a fixed
  number of bytes (``/dev/zero`` or a growing file cannot exhaust memory);
- text is UTF-8 (a UTF-8 byte-order mark is skipped); anything else is an error that names
  the encoding the bytes look like (UTF-16/UTF-32 by their byte-order mark or zero bytes,
  latin-1/Windows-1252 otherwise);
- JSON and TOML nest at most ``MAX_DEPTH`` levels, checked before the parser runs (no
  ``RecursionError``);
- numbers are finite: JSON's ``NaN``/``Infinity``, TOML's ``nan``/``inf`` and literals beyond
  float range are an error naming the field.

Range checks of the values themselves belong to the dataclasses that hold them
(``ModelSpec``, ``Popularity``, ``DeploymentProblem``, ...) and to ``moeopt.limits``.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.errors import InputError

MiB = 1024 * 1024
#: Problem, plan, counts, loads and profile files. The largest built-in spec is a few KB and an
#: inline loads array of the largest allowed shape is ~30 MB of JSON; 64 MiB bounds what a
#: parser holds in memory (Python objects take ~10x the text).
MAX_DOCUMENT_BYTES = 64 * MiB
#: Routing traces (moeopt JSONL or per-token JSONL from another tool). Records are kept as
#: compact arrays; 512 MiB is ~10 million per-token records and ~2 GB of memory at most.
MAX_TRACE_BYTES = 512 * MiB
#: One JSONL record: a moeopt trace record with all gate probabilities of the largest allowed
#: model (65,536 layer x expert cells) is ~0.6 MB.
MAX_LINE_BYTES = 16 * MiB
#: Nesting of JSON arrays/objects and TOML tables/arrays. moeopt's formats need at most 5 (an
#: inline loads array inside its table); Python's parsers recurse and would fail near 1,000.
MAX_DEPTH = 32

_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
)
_UTF8_BOM = b"\xef\xbb\xbf"


# ---- bytes --------------------------------------------------------------------------------------


def _open_regular(path: str | Path, max_bytes: int) -> tuple[int, int]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``; (fd, size)."""
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(source, "file", "no such file") from None
    except IsADirectoryError:
        raise InputError(source, "file", "is a directory; allowed: a regular file") from None
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise InputError(source, "file", f"is {kind}; allowed: a regular file")
    if info.st_size > max_bytes:
        os.close(fd)
        raise InputError(
            source, "file", f"{info.st_size:,} bytes; allowed: at most {max_bytes:,} bytes"
        )
    return fd, info.st_size


def read_bytes(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file, never more than ``max_bytes`` (the file may grow or lie)."""
    fd, _ = _open_regular(path, max_bytes)
    chunks, total = [], 0
    try:
        while True:
            chunk = os.read(fd, min(8 * MiB, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputError(str(path), "file", f"larger than {max_bytes:,} bytes")
    except OSError as exc:
        raise InputError(str(path), "file", f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


# ---- text ---------------------------------------------------------------------------------------


def decode_utf8(data: bytes, source: str) -> str:
    """UTF-8 text; an error naming what the bytes look like otherwise."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise InputError(
                source, "file", f"looks like {name} (byte-order mark); allowed: UTF-8 text"
            )
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    zero = data.find(b"\x00")
    if zero >= 0:  # valid UTF-8, but never in JSON, TOML or JSONL text: UTF-16/32 without a BOM
        raise InputError(
            source, "file", f"zero byte at offset {zero} (looks like UTF-16 or UTF-32 without a "
            "byte-order mark, or a binary file); allowed: UTF-8 text",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        looks = "latin-1 or Windows-1252"
        raise InputError(
            source,
            "file",
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}; looks like "
            f"{looks}); allowed: UTF-8 text",
        ) from None


def read_text(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A user's text file: regular, size-capped, UTF-8."""
    return decode_utf8(read_bytes(path, max_bytes), str(path))


def iter_lines(
    path: str | Path, max_bytes: int = MAX_TRACE_BYTES, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a JSON Lines file, streamed with the same checks."""
    source = str(path)
    fd, _ = _open_regular(path, max_bytes)
    total = 0
    with os.fdopen(fd, "rb") as f:
        for lineno in range(1, 1 << 62):
            try:
                raw = f.readline(max_line + 1)
            except OSError as exc:
                raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
            if not raw:
                return
            total += len(raw)
            if total > max_bytes:
                raise InputError(source, "file", f"larger than {max_bytes:,} bytes")
            if len(raw) > max_line:
                raise InputError(
                    f"{source}:{lineno}", "record", f"line longer than {max_line:,} bytes"
                )
            if lineno == 1:
                text = decode_utf8(raw, source)
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = decode_utf8(raw, f"{source}:{lineno}")
            yield lineno, text


# ---- nesting ------------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
_TOML_SKIP = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\n]*\'|#[^\n]*'
)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def nesting_depth(text: str, toml: bool = False) -> int:
    """Deepest bracket nesting outside strings (and TOML comments), without parsing.

    Vectorized in blocks, so a 64 MiB document costs well under a second and bounded memory.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit
    stripped = (_TOML_SKIP if toml else _JSON_STRING).sub("", text)
    data = np.frombuffer(stripped.encode("utf-8", "replace"), dtype=np.uint8)
    deepest, carry, block = 0, 0, 4 * MiB
    for start in range(0, len(data), block):
        depth = np.cumsum(_OPEN[data[start : start + block]], dtype=np.int64) + carry
        deepest, carry = max(deepest, int(depth.max())), int(depth[-1])
    return deepest


def _check_depth(text: str, source: str, toml: bool = False) -> None:
    depth = nesting_depth(text, toml=toml)
    if depth > MAX_DEPTH:
        raise InputError(
            source, "file", f"nested {depth} levels deep; allowed: at most {MAX_DEPTH} levels"
        )


# ---- finite numbers -----------------------------------------------------------------------------


_HUGE = re.compile(r"[eE][+]?0*[1-9]\d\d|\d{300}")


def _maybe_nonfinite(text: str, huge: bool = True) -> bool:
    """Whether parsing ``text`` may have produced a NaN or an infinity: JSON's NaN/Infinity
    literals (found as substrings), or (``huge``) a literal beyond float range (an exponent of
    three or more digits, or 300+ digits). Only then is the parsed data walked."""
    if "NaN" in text or "Infinity" in text:
        return True
    return huge and _HUGE.search(text) is not None


def path_text(path: tuple[Any, ...]) -> str:
    """('model', 'layers', 3) -> 'model.layers[3]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def find_nonfinite(data: Any) -> tuple[tuple[Any, ...], float] | None:
    """The path and value of the first NaN or infinite float in a parsed document."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return path, value
        elif isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
    return None


def object_depth(data: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed data, stopping once past ``limit`` (TOML dotted keys nest too)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list))
    return deepest


#: A JSON escape of a UTF-16 surrogate (``\ud800``..``\udfff``): paired ones make one character,
#: a lone one a Python string that cannot be printed or written as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def find_lone_surrogate(data: Any) -> tuple[Any, ...] | None:
    """The path of the first key or string holding a lone UTF-16 surrogate, or None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for k, v in value.items():
                if _LONE_SURROGATE.search(k):
                    return (*path, k.encode("utf-8", "backslashreplace").decode())
                stack.append((v, (*path, k)))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
    return None


def _reject_lone_surrogates(text: str, data: Any, source: str) -> None:
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    found = find_lone_surrogate(data)
    if found is not None:
        raise InputError(
            source, path_text(found), "holds an escaped lone UTF-16 surrogate (\\ud800..\\udfff "
            "without its pair): not text; allowed: UTF-8 text",
        )


def _reject_nonfinite(data: Any, source: str, prefix: str = "") -> None:
    found = find_nonfinite(data)
    if found is not None:
        path, value = found
        where = path_text(path)
        raise InputError(
            source,
            f"{prefix}{where}" if path else (prefix.rstrip(".") or "file"),
            f"got {value!r}; allowed: a finite number (NaN, Infinity and numbers beyond "
            "+/-1.8e308 are not)",
        )


# ---- JSON and TOML ------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def loads_json(text: str, source: str, what: str = "JSON") -> Any:
    """Parse a JSON document with the depth and finite-number rules; a key given twice in one
    object is an error (JSON parsers disagree on which one wins; TOML refuses it too)."""
    _check_depth(text, source)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise InputError(source, str(exc.args[0])[:200] or "file",
                         "given twice in one object; allowed: each key once") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, "file", f"not valid {what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(source, "file", f"not valid {what}: {exc}") from None
    if _maybe_nonfinite(text):
        _reject_nonfinite(data, source)
    _reject_lone_surrogates(text, data, source)
    return data


def loads_toml(text: str, source: str) -> dict[str, Any]:
    """Parse a TOML document with the depth and finite-number rules."""
    _check_depth(text, source, toml=True)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, "file", f"not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(source, "file", f"not valid TOML: {exc}") from None
    depth = object_depth(data)
    if depth > MAX_DEPTH:
        raise InputError(
            source, "file", f"nested more than {MAX_DEPTH} levels deep; allowed: at most "
            f"{MAX_DEPTH} levels",
        )
    _reject_nonfinite(data, source)  # TOML's inf/nan literals need not go through parse_float
    return data


def read_document(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """A JSON file, or TOML when the name ends in ``.toml``, with every rule above."""
    source = str(path)
    text = read_text(path, max_bytes)
    if str(path).endswith(".toml"):
        return loads_toml(text, source)
    return loads_json(text, source)


def read_json(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """A JSON file whatever its name, with every rule above."""
    return loads_json(read_text(path, max_bytes), str(path))


def json_record(line: str, where: str) -> dict[str, Any]:
    """One JSON Lines record as an object, with the depth rule and no NaN/Infinity literals.

    (A literal beyond float range parses as an infinity; every field moeopt reads from a
    record has a range check that refuses it, so records skip that search: it would cost as
    much as the parse.)
    """
    _check_depth(line, where)
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(where, "record", f"not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(where, "record", f"not valid JSON: {exc}") from None
    if not isinstance(rec, dict):
        raise InputError(where, "record", "need a JSON object per line")
    if _maybe_nonfinite(line, huge=False):
        _reject_nonfinite(rec, where)
    _reject_lone_surrogates(line, rec, where)
    return rec


def iter_records(
    path: str | Path, max_bytes: int = MAX_TRACE_BYTES
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSON Lines file."""
    source = str(path)
    for lineno, line in iter_lines(path, max_bytes):
        if line.strip():
            yield lineno, json_record(line, f"{source}:{lineno}")


def count_lines(path: str | Path, max_bytes: int = MAX_TRACE_BYTES) -> int:
    """Non-blank lines of a file (an upper bound on its records), read in blocks."""
    fd, _ = _open_regular(path, max_bytes)
    lines, total, pending = 0, 0, False
    with os.fdopen(fd, "rb") as f:
        while True:
            block = f.read(8 * MiB)
            if not block:
                break
            total += len(block)
            if total > max_bytes:
                raise InputError(str(path), "file", f"larger than {max_bytes:,} bytes")
            lines += block.count(b"\n")
            pending = not block.endswith(b"\n")
    return lines + (1 if pending else 0)


def first_line(path: str | Path, max_bytes: int = MAX_TRACE_BYTES) -> str:
    """The first line of a file (to tell formats apart), with every rule above."""
    for _, line in iter_lines(path, max_bytes):
        return line
    return ""
