"""The local backend's credentials: generated per server, never the host's.

One master secret per server. From it come the client's credentials (the Lambda API and S3:
``moeopt run``, ``calibrate``, ``validate`` and the awscli recipe of ``moeopt runtime serve``) and
one pair per execution environment (its role: S3 only). A secret is an HMAC of the master and the
access key id, so the S3 server and the Lambda service check any key without a key table, and a
function that holds its own pair cannot make another one. Access key ids carry the network
model's identities: ``MOEOPTCOORD...`` (the coordinator's streams) and ``MOEOPTENV...`` (one link
per execution environment).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambda_runtime.local.network import COORDINATOR_KEY_PREFIX

ENVIRONMENT_KEY_PREFIX = "MOEOPTENV"
PROFILE = "moeopt-local"
_KEY_ID = re.compile(rf"(?:{COORDINATOR_KEY_PREFIX}|{ENVIRONMENT_KEY_PREFIX})[0-9A-F]{{16}}")


@dataclass(frozen=True, repr=False)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def boto3(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key}

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials({self.access_key_id}, ****)"


@dataclass(frozen=True, repr=False)
class ServerSecrets:
    """The master secret and the client's access key id of one server."""

    master: str
    client_key_id: str

    @classmethod
    def generate(cls) -> ServerSecrets:
        return cls(secrets.token_hex(32), _new_key_id(COORDINATOR_KEY_PREFIX))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ServerSecrets:
        return cls(str(config["master"]), str(config["client_key_id"]))

    def to_config(self) -> dict[str, str]:
        """For the server's child processes (sent on their stdin, never on a command line)."""
        return {"master": self.master, "client_key_id": self.client_key_id}

    def __repr__(self) -> str:
        return f"ServerSecrets(client={self.client_key_id}, ****)"

    def client(self) -> Credentials:
        return Credentials(self.client_key_id, self._derive(self.client_key_id))

    def new_environment(self) -> Credentials:
        """A fresh pair for one execution environment (its role: the local S3)."""
        key_id = _new_key_id(ENVIRONMENT_KEY_PREFIX)
        return Credentials(key_id, self._derive(key_id))

    def secret_for(self, access_key_id: str) -> str | None:
        """The secret of a key this server issued (None: not one of ours)."""
        if not _KEY_ID.fullmatch(access_key_id):
            return None
        return self._derive(access_key_id)

    def is_client(self, access_key_id: str) -> bool:
        return hmac.compare_digest(access_key_id, self.client_key_id)

    def _derive(self, access_key_id: str) -> str:
        digest = hmac.new(bytes.fromhex(self.master), access_key_id.encode(), hashlib.sha256)
        return base64.b64encode(digest.digest()).decode()[:40]

    def write_file(self, path: Path, comment: str = "") -> None:
        """The client's credentials as a shared-credentials file (profile ``moeopt-local``),
        created with mode 0600 (an existing file is replaced, not reused)."""
        c = self.client()
        text = (f"# {comment}\n" if comment else "") + (
            f"[{PROFILE}]\naws_access_key_id = {c.access_key_id}\n"
            f"aws_secret_access_key = {c.secret_access_key}\n")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _new_key_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8).upper()
