"""The local Lambda control plane: the function registry and its operations.

CreateFunction, GetFunction, GetFunctionConfiguration, UpdateFunctionConfiguration,
DeleteFunction, ListFunctions, Put/Get/DeleteFunctionConcurrency and GetAccountSettings. Every
input is checked as Lambda checks it (types, ranges, patterns, reserved environment variables,
the 4 KB environment, the code's size) and refused with a 400 in Lambda's shape naming the field
and what is allowed (``lambda_runtime.local.validation``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import shutil
import threading
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambda_runtime.local import validation as v
from lambda_runtime.local.config import FunctionConfig
from lambda_runtime.local.errors import ApiError, invalid, not_found

if TYPE_CHECKING:
    from lambda_runtime.local.environment import ExecutionEnvironment

#: Lambda's code limits (AccountLimit of GetAccountSettings).
CODE_SIZE_ZIPPED = 52_428_800
CODE_SIZE_UNZIPPED = 262_144_000
TOTAL_CODE_SIZE = 80_530_636_800
MAX_ZIP_ENTRIES = 20_000  # the local backend's own bound on files in one package


@dataclass
class Function:
    config: FunctionConfig
    envs: list[ExecutionEnvironment] = field(default_factory=list)
    reserved_concurrency: int | None = None
    code_dir: Path | None = None  # an extracted Zip package, removed with the function


class ControlPlane:
    """The functions of one local Lambda service (``lock`` is shared with the data plane)."""

    def __init__(self, workdir: Path, concurrency_limit: int, lock: threading.Lock) -> None:
        self.workdir = workdir
        self.concurrency_limit = concurrency_limit
        self.functions: dict[str, Function] = {}
        self._lock = lock

    # ---- reads ---------------------------------------------------------------------------------
    def get(self, name: str) -> Function:
        """The function (call with the lock held or accept a racy read)."""
        fn = self.functions.get(name)
        if fn is None:
            raise not_found(name)
        return fn

    def get_function(self, name: str) -> dict[str, Any]:
        with self._lock:
            fn = self.get(name)
            out: dict[str, Any] = {
                "Configuration": fn.config.configuration(),
                "Code": {"RepositoryType": "Local", "Location": fn.config.task_root},
                "Tags": dict(fn.config.tags),
            }
            if fn.reserved_concurrency is not None:
                out["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved_concurrency}
        return out

    def get_configuration(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.get(name).config.configuration()

    def list_functions(self) -> dict[str, Any]:
        with self._lock:
            return {"Functions": [f.config.configuration() for f in self.functions.values()]}

    def account_settings(self) -> dict[str, Any]:
        with self._lock:
            reserved = sum(f.reserved_concurrency or 0 for f in self.functions.values())
            code = sum(f.config.code_size for f in self.functions.values())
            count = len(self.functions)
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE,
                "CodeSizeUnzipped": CODE_SIZE_UNZIPPED,
                "CodeSizeZipped": CODE_SIZE_ZIPPED,
                "ConcurrentExecutions": self.concurrency_limit,
                "UnreservedConcurrentExecutions": self.concurrency_limit - reserved,
            },
            "AccountUsage": {"TotalCodeSize": code, "FunctionCount": count},
        }

    def get_concurrency(self, name: str) -> dict[str, Any]:
        with self._lock:
            fn = self.get(name)
            if fn.reserved_concurrency is None:
                return {}
            return {"ReservedConcurrentExecutions": fn.reserved_concurrency}

    # ---- writes --------------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = v.function_name(v.required(body, "FunctionName"), "FunctionName")
        role = v.role(v.required(body, "Role"))
        memory = v.integer(body, "MemorySize", 128, v.MEMORY_RANGE)
        timeout = v.integer(body, "Timeout", 3, v.TIMEOUT_RANGE)
        package = v.choice(body, "PackageType", ("Zip", "Image"), "Zip")
        code = v.mapping(v.required(body, "Code"), "Code")
        runtime = body.get("Runtime")
        if package == "Zip":
            runtime = v.runtime(v.required(body, "Runtime"))
            handler = v.handler(v.required(body, "Handler"))
        else:
            if runtime is not None:
                raise invalid("Runtime: not allowed for PackageType Image (the image has its own)")
            handler = self._image_handler(body)
        environment = v.environment(body.get("Environment"))
        architecture = v.architectures(body.get("Architectures"))
        description = v.description(body.get("Description", ""))
        tags = v.tags(body.get("Tags"))
        code_dir = None
        if package == "Image":
            root, raw = self._image_root(code)
        else:
            raw = self._zip_bytes(code)
            code_dir = root = self.workdir / "code" / f"{name}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
        if code_dir is not None:
            _extract(raw, code_dir)
        config = FunctionConfig(
            name=name, handler=handler, memory_mb=memory, timeout_s=float(timeout),
            task_root=str(root.resolve()), environment=environment, architecture=architecture,
            package_type=package, runtime=runtime, role=role, description=description, tags=tags,
            last_modified=_now(), code_sha256=base64.b64encode(hashlib.sha256(raw).digest()).decode(),
            code_size=len(raw),
        )
        with self._lock:
            if name in self.functions:  # created meanwhile
                if code_dir is not None:
                    shutil.rmtree(code_dir, ignore_errors=True)
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            self.functions[name] = Function(config, code_dir=code_dir)
        return config.configuration()

    def update_configuration(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[ExecutionEnvironment]]:
        """New configuration; returns it and the idle environments to close (busy ones retire
        when their invocation ends: every later invocation starts from the new configuration)."""
        with self._lock:
            current = self.get(name).config
        changes: dict[str, Any] = {}
        if "Role" in body:
            changes["role"] = v.role(body["Role"])
        if "MemorySize" in body:
            changes["memory_mb"] = v.integer(body, "MemorySize", 128, v.MEMORY_RANGE)
        if "Timeout" in body:
            changes["timeout_s"] = float(v.integer(body, "Timeout", 3, v.TIMEOUT_RANGE))
        if "Environment" in body:
            changes["environment"] = v.environment(body["Environment"])
        if "Description" in body:
            changes["description"] = v.description(body["Description"])
        if current.package_type == "Zip":
            if "Handler" in body:
                changes["handler"] = v.handler(body["Handler"])
            if "Runtime" in body:
                changes["runtime"] = v.runtime(body["Runtime"])
        else:
            if body.get("Runtime") is not None:
                raise invalid("Runtime: not allowed for PackageType Image (the image has its own)")
            if "ImageConfig" in body or "Handler" in body:
                changes["handler"] = self._image_handler(body)
        with self._lock:
            fn = self.get(name)
            fn.config = replace(fn.config, last_modified=_now(), **changes)
            retired = [e for e in fn.envs if not e.busy]
            for e in retired:
                fn.envs.remove(e)
            return fn.config.configuration(), retired

    def delete(self, name: str) -> list[ExecutionEnvironment]:
        """Remove the function; returns its environments (to close)."""
        with self._lock:
            fn = self.get(name)
            del self.functions[name]
            envs = list(fn.envs)
        if fn.code_dir is not None:
            shutil.rmtree(fn.code_dir, ignore_errors=True)
        return envs

    def put_concurrency(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        value = body.get("ReservedConcurrentExecutions")
        if value is None:
            raise invalid("ReservedConcurrentExecutions: required; allowed: an integer >= 0")
        reserved = v.integer(body, "ReservedConcurrentExecutions", 0, (0, self.concurrency_limit))
        with self._lock:
            fn = self.get(name)
            others = sum(f.reserved_concurrency or 0 for n, f in self.functions.items() if n != name)
            if others + reserved > self.concurrency_limit:
                raise invalid(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    f"UnreservedConcurrentExecution below its minimum value of [0] (account limit "
                    f"{self.concurrency_limit}, reserved by other functions {others}).")
            fn.reserved_concurrency = reserved
        return {"ReservedConcurrentExecutions": reserved}

    def delete_concurrency(self, name: str) -> None:
        with self._lock:
            self.get(name).reserved_concurrency = None

    # ---- code ----------------------------------------------------------------------------------
    @staticmethod
    def _image_handler(body: dict[str, Any]) -> str:
        image = v.mapping(body.get("ImageConfig") or {}, "ImageConfig")
        command = image.get("Command")
        if command is not None:
            if not isinstance(command, list) or not command or not isinstance(command[0], str):
                raise invalid("ImageConfig.Command: a non-empty list of strings; the first is the "
                              "handler (module.function)")
            return v.handler(command[0], "ImageConfig.Command[0]")
        if body.get("Handler") is not None:
            return v.handler(body["Handler"])
        raise invalid("ImageConfig.Command: required for a local image (its first element is "
                      "the handler, module.function)")

    @staticmethod
    def _image_root(code: dict[str, Any]) -> tuple[Path, bytes]:
        uri = code.get("ImageUri")
        if not isinstance(uri, str) or not uri.startswith("local:"):
            raise invalid(f"Code.ImageUri: {str(uri)[:200]!r}; allowed: local:<directory> (the "
                          "local backend runs images from a directory on this machine)")
        root = Path(uri[len("local:"):])
        if not root.is_absolute() or not root.is_dir():
            raise invalid(f"Code.ImageUri: {uri[:200]!r}: not an absolute path to a directory")
        return root, str(root.resolve()).encode()

    @staticmethod
    def _zip_bytes(code: dict[str, Any]) -> bytes:
        raw = code.get("ZipFile")
        if raw is None:
            given = ", ".join(sorted(code)) or "nothing"
            raise invalid(f"Code: {given}; allowed: ZipFile (base64), or PackageType Image with "
                          "ImageUri=local:<dir> (S3 code locations are not supported locally)")
        if not isinstance(raw, str) or len(raw) > CODE_SIZE_ZIPPED * 4 // 3 + 4:
            raise invalid("Code.ZipFile: base64 of a .zip of at most 52428800 bytes")
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("Code.ZipFile: not valid base64") from None


def _extract(raw: bytes, root: Path) -> None:
    """Unzip a package after checking it (a .zip; entries and unzipped size within limits)."""
    bad = invalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise invalid(f"Code.ZipFile: {len(infos)} files; allowed: at most {MAX_ZIP_ENTRIES}")
            if sum(i.file_size for i in infos) > CODE_SIZE_UNZIPPED:
                raise invalid(f"Unzipped size must be smaller than {CODE_SIZE_UNZIPPED} bytes")
            root.mkdir(parents=True, exist_ok=False)
            zf.extractall(root)  # zipfile drops absolute paths and '..' components
    except ApiError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError, zlib.error):
        shutil.rmtree(root, ignore_errors=True)
        raise bad from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
