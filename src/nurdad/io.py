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


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes nurdad's outputs."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
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

    The lock file records the owner's pid; a lock left by a dead process (kill -9) is taken over.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and _pid_alive(owner):
                raise RunDirError(
                    f"{run_dir}: another nurdad process (pid {owner}) is writing this run dir; "
                    "wait for it or choose another --out"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    else:
        raise RunDirError(f"{run_dir}: could not take the run-dir lock")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield run_dir
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


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
