"""The local cloud's state directory and the keys it generates for itself.

Everything the local cloud keeps lives under one directory (default ``.assistflow/`` in the
current directory, ``ASSISTFLOW_STATE_DIR`` overrides): SQLite databases for queues, commands
and invocations, files for objects, the instance sandboxes, and ``keys.json`` with the signing
keys generated on first start. Nothing in it is ever committed (it is git-ignored) and the keys
are meaningless outside this machine's loopback emulators.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from local.emulators.base import KeyRing
from local.ram import Identity

STATE_DIR_ENV = "ASSISTFLOW_STATE_DIR"
DEFAULT_STATE_DIR = ".assistflow"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: ``explicit``, else ``$ASSISTFLOW_STATE_DIR``, else ``.assistflow``."""
    raw = explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class LocalKeys:
    """Signing material of the local cloud, generated once per state directory.

    ``access_key_*`` is the "user" pair handed out in endpoints.json (tests, CLI, your own
    scripts): an account owner's, allowed everything. ``sts_*`` plus ``security_token`` are an
    STS pair bound to no role, for test harnesses that run functions without a template role;
    the local cloud's functions get their own, bound to their role (``issue_sts``).
    """

    access_key_id: str
    access_key_secret: str
    sts_access_key_id: str
    sts_access_key_secret: str
    security_token: str
    webhook_secret: str

    def keyring(self) -> KeyRing:
        return KeyRing({
            self.access_key_id: (self.access_key_secret, None),
            self.sts_access_key_id: (self.sts_access_key_secret, self.security_token),
        })


@dataclass(frozen=True)
class StsCredentials:
    """A function's STS key pair, as FC hands it over (``ALIBABA_CLOUD_*``)."""

    access_key_id: str
    access_key_secret: str
    security_token: str

    def environment(self) -> dict[str, str]:
        return {"ALIBABA_CLOUD_ACCESS_KEY_ID": self.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": self.security_token}


def issue_sts(keyring: KeyRing, identity: Identity) -> StsCredentials:
    """A fresh STS key pair acting as ``identity`` (a function's role), accepted from now on by
    every emulator that shares ``keyring`` and allowed only what the role's policies allow.

    FC gives each function the credentials of an AssumeRole session on its role; these live as
    long as the local cloud runs (never written to disk) and die with it, as STS tokens expire.
    """
    creds = StsCredentials("STS.LOCAL" + secrets.token_hex(8).upper(),
                           secrets.token_urlsafe(24), secrets.token_urlsafe(48))
    keyring.bind(creds.access_key_id, creds.access_key_secret, creds.security_token, identity)
    return creds


def _generate() -> LocalKeys:
    # "LOCAL" ids make it obvious in any log that these are not Alibaba Cloud keys.
    return LocalKeys(
        access_key_id="LOCAL" + secrets.token_hex(8).upper(),
        access_key_secret=secrets.token_urlsafe(24),
        sts_access_key_id="STS.LOCAL" + secrets.token_hex(8).upper(),
        sts_access_key_secret=secrets.token_urlsafe(24),
        security_token=secrets.token_urlsafe(48),
        webhook_secret=secrets.token_hex(32),
    )


def load_or_create_keys(directory: Path) -> LocalKeys:
    """Keys of this state directory, created (mode 0600) on first use."""
    path = directory / "keys.json"
    if path.exists():
        return LocalKeys(**json.loads(path.read_text()))
    keys = _generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(keys), fh, indent=2)
    return keys


def write_private_json(path: Path, data: object) -> None:
    """Atomically write JSON readable only by this user (it may carry local secrets)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
