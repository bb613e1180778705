"""Jet generation speed: jets/s per core per process, where the time goes, and 1 -> 2 workers.

    python benchmarks/generate.py [--quick]

Part 1: for each process (qcd, wz, top, hbb, wprime), `simulate_jets` in this process (one core),
then `jet_images` and `write_jets` timed separately: the work of one `nurdad generate` shard. The
processes are interleaved (qcd wz top hbb wprime qcd ...) over the repetitions, each with its own
seed. Shares of the wall time: Pythia8 (initialization, event generation, reading the event record;
`JetBatch.timing['pythia']`), clustering + truth matching + constituent arrays ('clustering'),
N-subjettiness ('substructure'), images, HDF5 write, and the rest (Python bookkeeping). The
Pythia initialization alone is also timed once per process (`make_generator`): every shard pays it.

Part 2: the same `nurdad.generate.generate` job (same seeds, 4 shards) with workers=1 and workers=2,
alternated; speedup = t(1) / t(2), and the two outputs are checked to be the same jets.

Goal: non-Pythia overhead <= 15% of the generation time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import common
import numpy as np

from nurdad.data import open_dataset, write_jets
from nurdad.generate import GenerateConfig, generate
from nurdad.images import ImageConfig, jet_images
from nurdad.simulation import SimulationConfig, get_process, simulate_jets
from nurdad.simulation.pythia import make_generator

PROCESSES = ("qcd", "wz", "top", "hbb", "wprime")
PLANS = {
    "full": {"jets": 100, "repeats": 2, "scaling": {"qcd": 200, "top": 200}, "shard": 100,
             "scaling_repeats": 2},
    "quick": {"jets": 30, "repeats": 1, "scaling": {"qcd": 40, "top": 40}, "shard": 20,
              "scaling_repeats": 1},
}
PARTS = ("pythia", "clustering", "substructure", "images", "write", "other")


def one_shard(process: str, n: int, seed: int, tmp: Path) -> dict[str, float]:
    """Seconds per part of simulating, imaging and writing `n` jets; plus 'total', 'jets', 'events'."""
    sim, images_config = SimulationConfig(), ImageConfig()
    start = time.perf_counter()
    batch = simulate_jets(process, n, seed, sim)
    t_sim = time.perf_counter()
    images = jet_images(batch.constituents, batch.eta, batch.phi, images_config)
    t_img = time.perf_counter()
    write_jets(tmp / f"{process}-{seed}.h5", images, {"process": np.full(len(batch), process, dtype="S16"),
                                                     "mass": batch.mass, "pt": batch.pt})
    end = time.perf_counter()
    out = dict(batch.timing)
    out.update(images=t_img - t_sim, write=end - t_img, total=end - start, jets=len(batch),
               events=batch.n_events)
    out["other"] = (t_sim - start) - sum(batch.timing.values())
    return out


def part1(plan: dict, tmp: Path) -> tuple[str, dict]:
    init = {}
    for process in PROCESSES:
        start = time.perf_counter()
        make_generator(get_process(process), 12345, SimulationConfig())
        init[process] = time.perf_counter() - start
    runs: dict[str, list[dict]] = {p: [] for p in PROCESSES}
    for rep in range(plan["repeats"]):
        for process in PROCESSES:
            r = one_shard(process, plan["jets"], 1000 + rep, tmp)
            runs[process].append(r)
            print(f"  {process}: {r['jets']} jets in {r['total']:.1f} s", flush=True)
    rows, totals = [], dict.fromkeys((*PARTS, "total"), 0.0)
    for process, rs in runs.items():
        summed = {k: sum(r[k] for r in rs) for k in (*PARTS, "total", "jets", "events")}
        for k in totals:
            totals[k] += summed[k]
        rate = common.median([r["jets"] / r["total"] for r in rs])
        shares = [100 * summed[k] / summed["total"] for k in PARTS]
        rows.append([process, int(summed["jets"]), f"{100 * summed['jets'] / summed['events']:.0f}%", rate,
                     init[process], *(f"{s:.1f}" for s in shares),
                     f"{100 - shares[0]:.1f}"])
    overall = [100 * totals[k] / totals["total"] for k in PARTS]
    rows.append(["all", "", "", "", "", *(f"{s:.1f}" for s in overall), f"{100 - overall[0]:.1f}"])
    text = (f"**Per process, one core** ({plan['repeats']} interleaved repetitions of {plan['jets']} jets; "
            "jets/s = median over repetitions of jets / (simulate + images + write); shares in % of "
            "that time, summed over repetitions; Pythia includes one initialization per repetition):\n\n"
            + common.table(["process", "jets", "acceptance (jets/events)", "jets/s per core",
                            "Pythia init s", "Pythia %", "clustering+matching %", "substructure %",
                            "images %", "HDF5 write %", "other %", "non-Pythia %"], rows))
    return text, {"overhead": 100 - overall[0],
                  "overhead_by_process": {r[0]: float(r[-1]) for r in rows[:-1]}}


def part2(plan: dict, tmp: Path) -> tuple[str, dict]:
    config = GenerateConfig(jets=dict(plan["scaling"]), seed=7, jets_per_shard=plan["shard"])
    n_shards = sum(-(-n // plan["shard"]) for n in plan["scaling"].values())
    counter = {"k": 0}

    def job(workers: int):
        def run():
            counter["k"] += 1
            out = tmp / f"scaling-w{workers}-{counter['k']}.h5"
            start = time.perf_counter()
            generate(config, out, workers=workers, show_progress=False)
            seconds = time.perf_counter() - start
            print(f"  workers={workers}: {seconds:.1f} s", flush=True)
            return seconds
        return run

    times = common.interleave({1: job(1), 2: job(2)}, plan["scaling_repeats"])
    outputs = {w: sorted(tmp.glob(f"scaling-w{w}-*.h5"))[0] for w in (1, 2)}
    same = all(np.array_equal(open_dataset(outputs[1]).column(c), open_dataset(outputs[2]).column(c))
               for c in ("process", "mass", "event_index"))
    t1, t2 = common.median(times[1]), common.median(times[2])
    jets = sum(plan["scaling"].values())
    rows = [[1, t1, common.spread(times[1]), jets / t1, 1.0, 1.0],
            [2, t2, common.spread(times[2]), jets / t2, t1 / t2, t1 / t2 / 2]]
    text = (f"**Scaling** (`nurdad.generate.generate`, jets {plan['scaling']}, {n_shards} shards of "
            f"{plan['shard']}, {plan['scaling_repeats']} alternated repetition(s), spawn start-up and the "
            "final merge included; the machine is shared, so 2 workers compete with other jobs for the "
            f"2 cores; outputs identical: {same}):\n\n"
            + common.table(["workers", "wall s (median)", "range", "jets/s", "speedup", "efficiency"], rows))
    return text, {"speedup": t1 / t2, "same": same}


def main() -> None:
    args = common.parser(__doc__.splitlines()[0], default_threads=1).parse_args()
    common.quiet_logging()
    plan = PLANS["quick" if args.quick else "full"]
    record = common.Record("generate.py", args, "generation is single-threaded per process (Pythia8, "
                           "FastJet, numpy); --threads and --data are not used")
    with tempfile.TemporaryDirectory(prefix="nurdad-generate-bench-") as tmp:
        print("part 1: per process", flush=True)
        text1, facts1 = part1(plan, Path(tmp))
        print("part 2: 1 vs 2 workers", flush=True)
        text2, facts2 = part2(plan, Path(tmp))
    worst = max(facts1["overhead_by_process"].items(), key=lambda kv: kv[1])
    goals = ("**Goals**\n\n"
             f"- non-Pythia overhead <= 15%: {facts1['overhead']:.1f}% over all processes (largest: "
             f"{worst[0]} {worst[1]:.1f}%) -> {common.verdict(facts1['overhead'] <= 15)}\n"
             f"- 2 workers: speedup {facts2['speedup']:.2f}x (ideal 2 on 2 idle cores; read it against the "
             "load average)\n\nReading: jets/s per core is the rate one generator process reaches while the "
             "machine's other jobs run (see the load average); on an idle core it is higher.")
    record.finish([text1, text2, goals])


if __name__ == "__main__":
    main()
