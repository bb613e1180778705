"""What every benchmark shares: flags, thread settings, machine and version records, interleaved
timing, tables, data subsets, and the atomic append of a result block to BENCHMARKS.md.

The benchmarks run on shared machines, so every measurement is taken side by side in one process
(A B A B ...), summarized by medians, and recorded with the load average at start and end.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
DEFAULT_DATA = REPO / "data" / "dev.h5"
EXTRA_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


# ---------------------------------------------------------------------------------------- flags
def parser(description: str, default_threads: int) -> argparse.ArgumentParser:
    """Flags every benchmark takes: --quick, --data, --threads, --no-record."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script in ~1-2 minutes")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"jet file (default {DEFAULT_DATA})")
    p.add_argument("--threads", type=int, default=default_threads,
                   help=f"torch.set_num_threads (default {default_threads})")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to BENCHMARKS.md")
    return p


def set_threads(n: int) -> None:
    """torch intra-op threads = n (inter-op threads = 1: every benchmark here is one graph at a time)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started: it only affects inter-op
        pass


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# ----------------------------------------------------------------------------- machine, versions
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine() -> dict:
    """CPU model, logical cores and the cores this process may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable}


def versions() -> dict[str, str]:
    """nurdad's tracked package versions, the git commit of the checkout, and the export extras."""
    from nurdad.io import git_commit, package_versions

    out = package_versions()
    for name in EXTRA_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["git"] = git_commit()
    return out


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


# ----------------------------------------------------------------------------------------- timing
def interleave(tasks: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, list[float]]:
    """Run the tasks round-robin `repeats` times (A B C A B C ...); seconds per call.

    A task may return its own measurement in seconds (e.g. the epoch time that excludes set-up);
    when it returns None its wall time is used. Round-robin spreads a burst of load from other jobs
    over all tasks instead of charging it to one.
    """
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            measured = task()
            times[name].append(time.perf_counter() - start if measured is None else float(measured))
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """'min-max' of the repetitions, to show how much the load moved them."""
    return f"{fmt(min(values))}-{fmt(max(values))}" if len(values) > 1 else "-"


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Exponent a of y ~ x^a by least squares on log-log (needs >= 2 points)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ----------------------------------------------------------------------------------------- tables
def fmt(x, digits: int = 3) -> str:
    """Numbers with `digits` significant digits (integers as is); strings untouched."""
    if isinstance(x, str):
        return x
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if x is None or not np.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 10 ** digits or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}" if abs(x) < 1e-3 else f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table with aligned columns (readable in a terminal as well)."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


# ------------------------------------------------------------------------------------------ data
def write_subset(source: Path, out: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A jet file with `counts[process]` rows of each process drawn (seeded) from `source`.

    All columns are copied, so the subset is a valid nurdad jet file; rows keep the source order.
    Asking for more jets of a process than `source` holds is an error.
    """
    from nurdad.data import COLUMNS, open_dataset, write_jets

    dataset = open_dataset(source)
    process = dataset.column("process")
    rng = np.random.default_rng(seed)
    picks = []
    for name, n in counts.items():
        rows = np.flatnonzero(process == name)
        if n > len(rows):
            raise SystemExit(f"{source}: {n} {name} jets asked for, it holds {len(rows)}")
        picks.append(rng.choice(rows, n, replace=False))
    rows = np.sort(np.concatenate(picks))
    columns = {name: dataset.column(name)[rows] for name in COLUMNS if name in dataset.files[0].columns}
    columns["process"] = columns["process"].astype("S16")
    return write_jets(out, dataset.read_images(rows), columns,
                      config={"benchmark_subset_of": str(source), "counts": counts, "seed": seed})


# ------------------------------------------------------------------------------------------ record
class Record:
    """One benchmark invocation: its command, start time and load; `finish` prints and appends."""

    def __init__(self, script: str, args: argparse.Namespace, threads_note: str):
        self.script = script
        self.args = args
        self.command = " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]])
        self.threads_note = threads_note
        self.started = time.time()
        self.load_start = load_average()

    def finish(self, sections: Sequence[str]) -> str:
        """Print the result block and append it to BENCHMARKS.md (unless --no-record)."""
        load_end = load_average()
        info, ver = machine(), versions()
        date = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
        shown = ("nurdad", "git", "python", "torch", "numpy", "h5py", "pythia8mc", "fastjet",
                 "onnxruntime")
        block = "\n".join([
            f"### {self.script}{' --quick' if self.args.quick else ''} - {date}",
            "",
            f"- command: `{self.command}`",
            f"- machine: {info['cpu']}, {info['cores']} logical cores ({info['usable_cores']} usable); "
            f"{self.threads_note}",
            f"- load average (1/5/15 min): start {'/'.join(f'{x:.2f}' for x in self.load_start)}, "
            f"end {'/'.join(f'{x:.2f}' for x in load_end)}",
            "- versions: " + ", ".join(f"{k} {ver.get(k, '?')}" for k in shown),
            f"- wall time of the benchmark: {time.time() - self.started:.0f} s",
            "",
            *[s.rstrip() + "\n" for s in sections],
        ])
        print("\n" + block)
        if not self.args.no_record:
            append_block(block)
            print(f"(appended to {BENCHMARKS_MD})")
        return block


def append_block(block: str, path: Path = BENCHMARKS_MD) -> None:
    """Append `block` to `path` atomically: the file is rewritten to a temporary name and renamed,
    under an exclusive lock on its directory so that concurrent benchmarks do not lose each other's."""
    from nurdad.io import atomic_path

    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        old = path.read_text() if path.exists() else ""
        with atomic_path(path) as tmp:
            tmp.write_text(old.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
