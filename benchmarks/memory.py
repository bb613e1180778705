"""Peak memory of `nurdad train` against dataset size: streaming from HDF5 vs images in memory.

    python benchmarks/memory.py [--quick] [--data FILE] [--threads N]

For each size, a subset of --data with equal numbers of QCD and W/Z jets is written, and a child
process runs `nurdad train` (NuRD, 1 epoch, fresh-critic check cut to 1 epoch) twice: with
`in_memory_gb = 0` (streaming forced; its output must carry JetBatches' 'streaming' log line) and
with the default `in_memory_gb = 4` (every split preloaded). Peak RSS = the child's own ru_maxrss
(os.wait4), so runs do not mask each other; "above start-up" subtracts the peak RSS of a child that
only imports nurdad.training and torch. Runs alternate (sizes x modes, then again per repetition);
the peak RSS of identical runs varies by tens of MB, so the minimum over repetitions is used.

Expectation: once the fixed-size buffers are full (8,192 jets: `JetFile.validate` scans blocks of
8,192 rows; the final scoring runs in batches of 1,024), streaming stays flat while in-memory grows
by about one image (50 x 50 float32 = 9.8 KB) per jet. Flatness is judged on the sizes >= 8,192
(full mode only). Also shown: the epoch time of each mode, i.e. what streaming costs in speed.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np

PLANS = {
    "full": {"sizes": (2500, 10000, 15000, 20000), "repeats": 2},
    "quick": {"sizes": (3000, 6000), "repeats": 1},
}
MODES = {"streaming": 0.0, "in memory": 4.0}
SATURATED_JETS = 8192  # fixed-size buffers are full from here on (nurdad.data.schema._SCAN_ROWS)
FLAT_FRACTION = 0.25  # streaming is flat if it grows < 25% as fast as in memory (sizes >= SATURATED_JETS)


def nurdad_command() -> list[str]:
    script = Path(sys.executable).with_name("nurdad")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nurdad.cli"]


def child(argv: list[str], log: Path, threads: int) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, wall seconds) of one child process; its output goes to `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is KB on Linux


def train_once(data: Path, in_memory_gb: float, tmp: Path, tag: str, threads: int) -> dict:
    config = tmp / f"{tag}.toml"
    config.write_text(f"[train]\nin_memory_gb = {in_memory_gb}\nepochs = 1\nfresh_critic_epochs = 1\n")
    run_dir, log = tmp / f"run-{tag}", tmp / f"{tag}.log"
    code, rss, wall = child([*nurdad_command(), "train", "--data", str(data), "--out", str(run_dir),
                             "--config", str(config)], log, threads)
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"nurdad train failed ({tag}, exit {code}); last lines of {log}:\n"
                         + "\n".join(text.splitlines()[-10:]))
    with open(run_dir / "history.csv") as f:
        epoch_seconds = float(next(csv.DictReader(f))["seconds"])
    return {"rss": rss, "wall": wall, "epoch": epoch_seconds, "streamed": text.count("streaming ")}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0], default_threads=1)
    p.add_argument("--sizes", type=int, nargs="+", help="jets per subset (default 2500 5000 10000 20000; "
                   "quick 3000 6000)")
    args = p.parse_args()
    plan = dict(PLANS["quick" if args.quick else "full"])
    if args.sizes:
        plan["sizes"] = tuple(sorted(args.sizes))
    record = common.Record("memory.py", args, f"child processes with OMP_NUM_THREADS={args.threads}")
    results: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="nurdad-memory-") as tmp:
        tmp = Path(tmp)
        code, base_rss, _ = child([sys.executable, "-c", "import torch, nurdad.training"], tmp / "base.log",
                                  args.threads)
        paths = {n: common.write_subset(args.data, tmp / f"jets-{n}.h5", {"qcd": n // 2, "wz": n - n // 2},
                                        seed=n) for n in plan["sizes"]}
        for rep in range(plan["repeats"]):
            for n, path in paths.items():
                for mode, gb in MODES.items():
                    r = train_once(path, gb, tmp, f"{n}-{mode.replace(' ', '_')}-{rep}", args.threads)
                    results.setdefault((n, mode), []).append(r)
                    print(f"  {n} jets, {mode}: peak RSS {r['rss']:.0f} MB, epoch {r['epoch']:.1f} s, "
                          f"'streaming' logged {r['streamed']}x", flush=True)
    sizes = plan["sizes"]
    peak = {key: min(r["rss"] for r in rs) for key, rs in results.items()}  # noise only adds: min
    epoch = {key: common.median([r["epoch"] for r in rs]) for key, rs in results.items()}
    streamed = {key: all(r["streamed"] for r in rs) for key, rs in results.items()}
    rows = []
    for n in sizes:
        s, m = (n, "streaming"), (n, "in memory")
        rows.append([n, peak[s], common.spread([r["rss"] for r in results[s]]), peak[s] - base_rss,
                     "yes" if streamed[s] else "NO", epoch[s], peak[m],
                     common.spread([r["rss"] for r in results[m]]), peak[m] - base_rss,
                     "yes" if streamed[m] else "no", epoch[m], epoch[s] / epoch[m]])
    table = common.table(["jets (QCD+W/Z)", "stream peak MB", "range", "above start-up", "'streaming' logged",
                          "stream epoch s", "memory peak MB", "range", "above start-up", "'streaming' logged",
                          "memory epoch s", "epoch stream / memory"], rows)
    big = [n for n in sizes if n >= SATURATED_JETS]
    slope = {mode: 1024 * float(np.polyfit(big, [peak[(n, mode)] for n in big], 1)[0]) if len(big) > 1
             else float("nan") for mode in MODES}
    all_streamed = all(streamed[(n, "streaming")] for n in sizes)
    if len(big) > 1:
        flat = slope["streaming"] < FLAT_FRACTION * slope["in memory"]
        flat_line = (f"- streaming peak RSS flat: fitted growth over {', '.join(f'{n:,}' for n in big)} "
                     f"jets {slope['streaming']:.2f} KB/jet vs {slope['in memory']:.2f} KB/jet in memory "
                     f"(one 50x50 float32 image = 9.8 KB; flat = < {FLAT_FRACTION:.0%} of the in-memory "
                     f"growth): {common.verdict(flat)}")
    else:
        flat_line = (f"- streaming peak RSS flat: n/a (needs >= 2 sizes >= {SATURATED_JETS:,} jets, where "
                     "the fixed-size buffers are full: run without --quick)")
    text = (f"`nurdad train` (NuRD, 1 epoch, batch 256, fresh_critic_epochs = 1, default splits: 60% "
            f"train); peak RSS of the child process, the minimum over {plan['repeats']} repetition(s) (range "
            "shown: the peak of identical runs varies by tens of MB); start-up (import torch + "
            f"nurdad.training) = {base_rss:.0f} MB; epoch s = history.csv's training time of the epoch "
            f"(median):\n\n{table}")
    goals = ("**Goals**\n\n"
             f"- streaming forced at every size ('streaming' logged): {common.verdict(all_streamed)}\n"
             f"{flat_line}\n\n"
             "Reading: below ~8,200 jets the streaming peak still grows with the data, by design: "
             "`JetFile.validate` scans the images in blocks of 8,192 rows and the final scoring runs in "
             "batches of 1,024 jets; above that only per-jet scalars (labels, weights, scores) grow. Peak "
             "RSS is insensitive to the machine's load, epoch times are not (see the load average); the "
             "epoch-time ratio is what reading 256 random rows per batch from the gzip-chunked HDF5 file "
             "(chunks of 256 images) costs.")
    record.finish([text, goals])


if __name__ == "__main__":
    main()
