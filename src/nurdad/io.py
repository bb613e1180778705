"""Atomic file output, provenance records and run-directory locking.

Every output of nurdad is written to a temporary name in the destination folder and renamed into
place, so a killed job never leaves a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from nurdad.errors import NurdadError, RunDirError

_TRACKED_PACKAGES = (
    "nurdad", "torch", "numpy", "h5py", "pythia8mc", "fastjet", "awkward", "scikit-learn", "scipy",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NurdadError(f"{path.parent}: cannot create output directory ({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise NurdadError(f"{path.parent}: output directory is not writable")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_torch(obj, path: str | os.PathLike) -> None:
    """`torch.save` atomically (checkpoints, models)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, **kwargs):
    """`torch.load` (full pickle: nurdad's own files); a damaged or foreign file is a `RunDirError`."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=False, **kwargs)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path}: damaged or not written by nurdad ({reason})") from None


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object written by `write_json`; a damaged file is a one-line `RunDirError`."""
    try:
        obj = json.loads(Path(path).read_text())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RunDirError(f"{path}: damaged JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def git_commit() -> str:
    """The commit of the nurdad checkout (with '+dirty' for local changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty=+dirty", "--abbrev=40"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(packages: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Versions of the packages whose behaviour shapes nurdad's outputs (and of Python)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance() -> dict:
    """What produced an output: versions, git commit, host and time (UTC)."""
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on a run directory; a second writer gets a clear `RunDirError`.

    The lock file records the owner as ``pid@host``; a lock left by a dead process on this host
    (kill -9) is taken over. The file is created complete by `os.link` (atomic, also on NFS), so a
    reader never sees it empty. A lock from another host (shared file system of a batch farm)
    cannot be checked and is respected; the message says which file to delete if that job is gone.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            _create_exclusive(lock, f"{os.getpid()}@{socket.gethostname()}")
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and _owner_alive(*owner):
                raise RunDirError(
                    f"{run_dir}: another nurdad process (pid {owner[0]} on {owner[1]}) is writing this "
                    f"run dir; wait for it or choose another --out (delete {lock} if it is gone)"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    else:
        raise RunDirError(f"{run_dir}: could not take the run-dir lock")
    try:
        yield run_dir
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _create_exclusive(path: Path, content: str) -> None:
    """Create `path` already holding `content`; FileExistsError if it exists."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system (some FUSE mounts): create, then write
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, content.encode())
        os.close(fd)
    finally:
        tmp.unlink()


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    """(pid, host) from a lock file ('pid@host', or a bare pid meaning this host); None if unreadable."""
    try:
        pid, _, host = lock.read_text().strip().partition("@")
        return int(pid), host or socket.gethostname()
    except (OSError, ValueError):
        return None


def _owner_alive(pid: int, host: str) -> bool:
    return host != socket.gethostname() or _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
