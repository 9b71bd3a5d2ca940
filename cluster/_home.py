"""The files a local stack keeps in its home, written by `cluster.local_stack` alone: the lock,
stack.json (endpoints, ports, pids), credentials.json (mode 0600), logs and Ray's runtime directory.

`cluster.localstate` reads the same files for jobs; the writing side lives here so jobs never
import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from cluster import _ray_head, _seaweed
from cluster.errors import StackError
from cluster.localstate import DEFAULT_REGION, credentials_file, mediajobs_home, stack_file


def resolve_home(home: Path | None) -> Path:
    return Path(home or mediajobs_home()).expanduser().resolve()


def prepare_home(home: Path | None) -> Path:
    home = resolve_home(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    for sub in ("logs", "seaweed"):
        (home / sub).mkdir(exist_ok=True)
    return home


def log_file(home: Path, name: str) -> Path:
    return home / "logs" / f"{name}.log"


def remove_runtime_files(home: Path, weed_ports: dict[str, int]) -> None:
    """Ray's session directory and the sockets under /tmp; logs and data stay in the home."""
    shutil.rmtree(_ray_head.runtime_dir(home), ignore_errors=True)
    for path in _seaweed.stale_socket_files(weed_ports):
        path.unlink(missing_ok=True)


def ensure_runtime_dir(home: Path) -> Path:
    runtime = _ray_head.runtime_dir(home)
    runtime.mkdir(mode=0o700, exist_ok=True)
    if runtime.stat().st_uid != os.getuid():
        raise StackError(f"{runtime} belongs to another user; remove it or use another MEDIAJOBS_HOME")
    return runtime


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one home (two terminals running `up` at once)."""
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_state(home: Path) -> dict:
    try:
        return json.loads(stack_file(home).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StackError(f"{stack_file(home)} is not valid JSON ({exc}); remove it, then run "
                         "`mediajobs local down` to stop this home's processes and `up` again") from None


def write_state(home: Path, state: dict) -> None:
    _write_private(stack_file(home), json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o644)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_credentials(home: Path) -> dict[str, str]:
    """The S3 key pairs (the stack's and a read-only one), generated once and reused afterwards."""
    path = credentials_file(home)
    try:
        creds = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        creds = {}
    pairs = {"": "MJ", "reader_": "MR"}  # field prefix -> access key prefix
    missing = [field for field in pairs if not (creds.get(f"{field}access_key") and creds.get(f"{field}secret_key"))]
    for field in missing:  # a home from before the reader pair gets one; the main pair is kept
        creds[f"{field}access_key"] = pairs[field] + secrets.token_hex(9).upper()
        creds[f"{field}secret_key"] = secrets.token_urlsafe(30)
    creds = {"region": DEFAULT_REGION, **creds}
    if missing:
        _write_private(path, json.dumps(creds, indent=2) + "\n")
    os.chmod(path, 0o600)
    return creds
