"""A folder of downloaded files that every process on this node shares: filled once, under a
lock, and used by a process only after it checked the copy itself.

Every scoring actor fetches its model when it starts; with one folder per node, N actors on a
node download a model once instead of N times. The folder is written into a temporary
sibling and renamed into place only when complete, so a downloader that crashes leaves no
half folder where readers look (its temporary folder is removed by the next download). A
copy that is not intact (changed on disk, or corrupt) is not an error: it is thrown away and
filled again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["shared_folder"]


def shared_folder(root: Path, name: str, is_intact: Callable[[Path], bool], fill: Callable[[Path], None]) -> Path:
    """The folder `root/name`, filled by `fill` once for every process on this node.

    Args:
        root: where shared folders live; created private to this user (mode 0o700).
        name: the folder's name: one name, one content (it names a model version, not a process).
        is_intact: whether a copy holds what this process expects; asked of every copy before
            this process uses it, including one another process made.
        fill: writes the files into the (empty, private) folder it is given; raises to refuse
            what it downloaded, and then nothing is put in place.

    Returns:
        `root/name`, as `is_intact` or `fill` left it.

    Raises:
        Whatever `fill` raises.
    """
    folder = root / name
    if _is_ours(folder) and is_intact(folder):
        return folder  # the common case: another process on the node filled it; no lock needed
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _filling(root, name):
        if _is_ours(folder) and is_intact(folder):
            return folder  # filled while this process waited for the lock
        _discard_leftovers(root, name)
        _discard(root, name, folder)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(name), dir=root))  # mode 0o700
        try:
            fill(staging)
            os.rename(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return folder


@contextmanager
def _filling(root: Path, name: str) -> Iterator[None]:
    """Holds the node-wide lock of `root/name`: one process fills it, the others wait. The
    lock file stays (removing it would let two processes hold two locks); the kernel
    releases the lock of a process that dies."""
    descriptor = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _is_ours(folder: Path) -> bool:
    """A real folder this user made; a link, or a folder of another user, is never used."""
    try:
        status = folder.lstat()
    except FileNotFoundError:
        return False
    return folder.is_dir() and not folder.is_symlink() and status.st_uid == os.getuid()


def _staging_prefix(name: str) -> str:
    return f".{name}.tmp-"


def _discard_leftovers(root: Path, name: str) -> None:
    """Temporary folders of `name` left by a filler that died: with the lock held, no process
    is writing one."""
    for leftover in root.glob(_staging_prefix(name) + "*"):
        _remove(leftover)


def _discard(root: Path, name: str, folder: Path) -> None:
    """Take a copy that is not intact out of readers' way first (a rename), then remove it."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink()
        return
    away = tempfile.mkdtemp(prefix=_staging_prefix(name), dir=root)
    os.rename(folder, Path(away) / "discarded")
    _remove(Path(away))


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
