"""Binary-safe tensor encoding for invoke payloads and object storage; never pickle.

Payloads carry raw little-endian bytes base64-encoded inside JSON (``{"dtype", "shape", "data"}``),
because Lambda's invoke API takes JSON text; objects in storage are ``.npy`` files read with
``allow_pickle=False``, because S3 objects are already binary.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

DTYPES = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "int64": "<i8"}


class PayloadError(ValueError):
    """A tensor field in an event or object is malformed (names the field and what is allowed)."""


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """A JSON-safe dict holding ``array``'s raw little-endian bytes (base64)."""
    name = str(array.dtype)
    if name not in DTYPES:
        raise PayloadError(f"dtype: {name!r} not supported; allowed: {', '.join(DTYPES)}")
    data = np.ascontiguousarray(array, dtype=DTYPES[name]).tobytes()
    return {
        "dtype": name,
        "shape": list(array.shape),
        "data": base64.b64encode(data).decode("ascii"),
    }


def decode_tensor(obj: Any, field: str = "tokens") -> np.ndarray:
    """Inverse of :func:`encode_tensor`; checks dtype, shape and byte count."""
    if not isinstance(obj, dict) or not {"dtype", "shape", "data"} <= obj.keys():
        raise PayloadError(f"{field}: must be an object with dtype, shape and data")
    dtype = obj["dtype"]
    if dtype not in DTYPES:
        raise PayloadError(f"{field}.dtype: {dtype!r} not supported; allowed: {', '.join(DTYPES)}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise PayloadError(f"{field}.shape: must be a list of non-negative integers")
    raw = base64.b64decode(obj["data"], validate=True)
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
    if len(raw) != expected:
        raise PayloadError(f"{field}.data: {len(raw)} bytes, shape {shape} needs {expected}")
    # a writable buffer: torch.from_numpy refuses read-only arrays
    return (
        np.frombuffer(bytearray(raw), dtype=DTYPES[dtype]).reshape(shape).astype(dtype, copy=False)
    )


def array_to_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes for an object-storage body."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def arrays_to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def arrays_from_npz(body: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
