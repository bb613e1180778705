"""Training speed of NuRD against the plain classifier, the reference critic schedule and the AE.

    python benchmarks/train_speed.py [--quick] [--data FILE] [--threads N]

Part 1, speed: for each training-set size, the same jets, batch size 256, one seeded batch order:
wall time per epoch and jets/s of
  (a) the lambda = 0 classifier (no critic),
  (b) NuRD fast, the default NurdConfig (lambda = 1, closed-form DisCo dependence penalty),
  (c) NuRD with the critic on its fast schedule (persistent critic, 5 critic steps per batch),
  (d) NuRD with the critic on the reference schedule (reference_frac = 2, critic re-initialized every
      batch, as in the reported runs): its epoch is O(n^2), so only a few encoder steps are timed and
      the epoch time is extrapolated as (seconds per encoder step) x (steps per epoch),
  (e) the autoencoder baseline (trained on QCD only, so its epoch holds half the jets).
Epochs (and the reference's steps) are interleaved A B C D E A B C D E ...; medians are reported.
Each model first takes its warm-up (the fast critic's `critic_warmup_steps`, timed separately, and
two untimed steps). The time per epoch against n is fitted with a log-log slope: ~1 for all but (d),
~2 for (d).

Part 2, decorrelation at a size where the reference finishes (full: 4,000 training jets, 3 epochs,
reference_frac = 2; quick: 1,000 jets, 2 epochs): full `nurdad.training.train` runs of (a) to (e)
on the same jets for the same epochs, and of (b) also for 2x and 4x the epochs; the
fresh-critic estimate of I(r; mass | y) on held-out background jets (summary.json of the run),
|Pearson corr(score, mass)| on held-out QCD, and the AUROC of top vs QCD+W/Z.

Goals checked: fast NuRD <= 1.5x the classifier per epoch; fast >= 20x faster than the reference at
equal or better decorrelation. For the latter, k = the smallest epoch multiplier (1, 2, 4) at which
fast reaches the reference's fresh-critic estimate (within 0.01 nats, or lower); the speedup at
equal decorrelation = (reference / fast time per epoch at the largest size) / k. This assumes k does
not depend on the training-set size (the reference cannot be trained to the end at large n here).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

from nurdad.baseline import BaselineConfig
from nurdad.data import open_dataset
from nurdad.evaluate import evaluation_rows
from nurdad.metrics import auroc, pearson_correlation
from nurdad.nurd.objective import NurdConfig
from nurdad.scoring import load_run, score_dataset
from nurdad.training import TRAIN, TrainConfig, _run_epoch, batches_for, build_objective, prepare_data, train

BATCH_SIZE = 256
REFERENCE_FRAC = 2.0
INFO_TOLERANCE_NATS = 0.01  # "equal" decorrelation: fresh-critic estimates within this
FAST_MULTIPLIERS = (1, 2, 4)  # part 2: fast NuRD also trains for 2x and 4x the epochs
METHODS = {  # label -> TrainConfig (the part-1 split fractions are set in `speed_config`)
    "classifier": TrainConfig(nurd=NurdConfig(lambda_penalty=0.0)),
    "NuRD fast": TrainConfig(nurd=NurdConfig(lambda_penalty=1.0)),  # the default: DisCo
    "NuRD critic fast": TrainConfig(nurd=NurdConfig(lambda_penalty=1.0, dependence="critic",
                                                    schedule="fast")),
    "NuRD reference": TrainConfig(nurd=NurdConfig(lambda_penalty=1.0, dependence="critic",
                                                  schedule="reference", reference_frac=REFERENCE_FRAC,
                                                  reference_reinit=True)),
    "AE": TrainConfig(model="ae", baseline=BaselineConfig(train_on=("qcd",))),
}
PLANS = {
    # sizes: training jets (QCD + W/Z) of part 1; the largest is the headline table
    "full": {"sizes": (2000, 4000, 8000, 16000), "repeats": 2, "reference_steps": 3,
             "decorrelation_jets": 4000, "decorrelation_epochs": 3, "top_jets": 1000},
    "quick": {"sizes": (500, 1000, 2000), "repeats": 2, "reference_steps": 2,
              "decorrelation_jets": 1000, "decorrelation_epochs": 2, "top_jets": 300},
}
SPEED_HELD_OUT = 0.05  # part 1 keeps 5% for val and 5% for test: nearly all of a subset trains
WARMUP_STEPS = 2


def speed_config(base: TrainConfig) -> TrainConfig:
    return dataclasses.replace(base, batch_size=BATCH_SIZE, val_fraction=SPEED_HELD_OUT,
                               test_fraction=SPEED_HELD_OUT)


def per_class(n_train: int, held_out: float) -> int:
    """Jets per background class so that about `n_train` QCD + W/Z jets land in the training split."""
    return math.ceil(n_train / (1 - held_out) / 2)


# ------------------------------------------------------------------------------------------ part 1
class Timed:
    """One model at one size: its objective, batches, and the callables that time it."""

    def __init__(self, config: TrainConfig, prepared, batches, run_dir: Path):
        self.config = config
        self.batches = batches  # shared by the models of one kind: same jets, same seeded order
        self.objective = build_objective(config, len(prepared.classes), prepared.nuisance.shape[1])
        self.run_dir = run_dir
        self.reference = config.model == "nurd" and config.nurd.schedule == "reference"
        start = time.perf_counter()
        self.objective.begin(self.batches)
        warms = getattr(self.objective, "uses_critic", False) and not self.reference
        self.warmup_seconds = time.perf_counter() - start if warms else None  # the fast critic's
        self.epoch = 0
        self._stream = iter(())
        if not self.reference:
            self.steps(WARMUP_STEPS)

    def steps(self, n: int) -> list[float]:
        """Seconds of each of `n` encoder steps, continuing through the epochs."""
        seconds = []
        while len(seconds) < n:
            batch = next(self._stream, None)
            if batch is None:
                self.epoch += 1
                self._stream = iter(self.batches.epoch(self.epoch))
                continue
            start = time.perf_counter()
            self.objective.train_step(batch, self.batches)
            seconds.append(time.perf_counter() - start)
        return seconds

    def epoch_seconds(self, reference_steps: int) -> float:
        """One timed epoch; for the reference schedule, steps x (seconds per step) extrapolated."""
        if self.reference:
            return float(np.mean(self.steps(reference_steps))) * len(self.batches)
        self.epoch += 1
        row = _run_epoch(self.objective, self.batches, self.epoch, self.config, False, self.run_dir)
        return row["seconds"]


def measure_size(data: Path, n_train: int, plan: dict, tmp: Path) -> dict[str, dict]:
    path = tmp / f"speed-{n_train}.h5"
    n = per_class(n_train, 2 * SPEED_HELD_OUT)
    common.write_subset(data, path, {"qcd": n, "wz": n}, seed=n_train)
    prepared, batches, timed = {}, {}, {}
    for label, base in METHODS.items():
        config = speed_config(base)
        if config.model not in prepared:
            prepared[config.model] = prepare_data(config, path)
            batches[config.model] = batches_for(prepared[config.model], TRAIN, config, shuffle=True)
        timed[label] = Timed(config, prepared[config.model], batches[config.model], tmp)
    times = common.interleave({label: (lambda t=t: t.epoch_seconds(plan["reference_steps"]))
                               for label, t in timed.items()}, plan["repeats"])
    out = {}
    for label, t in timed.items():
        seconds = common.median(times[label])
        out[label] = {"seconds": seconds, "all": times[label], "jets": len(t.batches.rows),
                      "steps": len(t.batches), "warmup": t.warmup_seconds,
                      "jets_per_second": len(t.batches.rows) / seconds}
    print(f"  {n_train} training jets: "
          + ", ".join(f"{k} {v['seconds']:.1f} s/epoch" for k, v in out.items()), flush=True)
    return out


def speed_tables(results: dict[int, dict[str, dict]], plan: dict) -> tuple[list[str], dict]:
    sizes = sorted(results)
    top = results[sizes[-1]]
    clf = top["classifier"]
    rows = []
    for label, r in top.items():
        rows.append([label + (" (extrapolated)" if label == "NuRD reference" else ""), r["jets"],
                     r["steps"], r["seconds"], common.spread(r["all"]), r["jets_per_second"],
                     r["seconds"] / clf["seconds"],
                     (r["seconds"] / r["jets"]) / (clf["seconds"] / clf["jets"]),
                     "-" if r["warmup"] is None else r["warmup"]])
    headline = common.table(
        ["model", "train jets/epoch", "steps/epoch", "s/epoch (median)", "range", "jets/s",
         "x classifier (epoch)", "x classifier (per jet)", "warm-up s (once)"], rows)
    scaling_rows = []
    for n in sizes:
        r = results[n]
        scaling_rows.append([n, *(r[label]["seconds"] for label in METHODS),
                             r["NuRD fast"]["seconds"] / r["classifier"]["seconds"],
                             r["NuRD reference"]["seconds"] / r["NuRD fast"]["seconds"]])
    slopes = {label: common.loglog_slope(sizes, [results[n][label]["seconds"] for n in sizes])
              for label in METHODS}
    scaling_rows.append(["log-log slope", *(f"{slopes[label]:.2f}" for label in METHODS), "", ""])
    scaling = common.table(["train jets", *(f"{label} s/epoch" for label in METHODS),
                            "fast / classifier", "reference / fast"], scaling_rows)
    ref_per_n2 = top["NuRD reference"]["seconds"] / sizes[-1] ** 2
    paper = 0.6 * 110_000  # the paper-size set: 55k QCD + 55k W/Z, 60% training
    facts = {
        "n": sizes[-1], "fast_over_clf": top["NuRD fast"]["seconds"] / clf["seconds"],
        "ref_over_fast": top["NuRD reference"]["seconds"] / top["NuRD fast"]["seconds"],
        "slopes": slopes,
        "paper_ref_hours": ref_per_n2 * paper**2 / 3600,
        "paper_fast_minutes": top["NuRD fast"]["seconds"] / sizes[-1] * paper / 60,
    }
    text = [
        f"**Speed at {sizes[-1]:,} training jets** (QCD + W/Z; batch {BATCH_SIZE}; {plan['repeats']} "
        f"interleaved timed epochs per model after the warm-up; the reference's epoch = mean seconds "
        f"per encoder step over {plan['reference_steps']} steps x steps per epoch, median over the "
        f"repetitions, reference_frac = "
        f"{REFERENCE_FRAC:g}, critic re-initialized every step; the AE trains on QCD only):\n\n{headline}",
        f"**Time per epoch vs training-set size** (same protocol at every size; slope = exponent a of "
        f"t ~ n^a):\n\n{scaling}\n\nExtrapolated to the paper-size set (66k training jets): reference "
        f"~{facts['paper_ref_hours']:.0f} h per epoch, fast ~{facts['paper_fast_minutes']:.1f} min per "
        "epoch on this machine.",
    ]
    return text, facts


# ------------------------------------------------------------------------------------------ part 2
def decorrelation(data: Path, plan: dict, tmp: Path) -> tuple[str, dict]:
    """Full `train` runs on the same jets: every model for E epochs, fast NuRD also for 2E and 4E.

    Returns the table and {run label: metrics}; labels are 'classifier', 'NuRD fast', 'NuRD fast x2',
    'NuRD fast x4', 'NuRD reference', 'AE'.
    """
    n_train, epochs = plan["decorrelation_jets"], plan["decorrelation_epochs"]
    base = TrainConfig()
    n = per_class(n_train, base.val_fraction + base.test_fraction)
    path = tmp / "decorrelation.h5"
    common.write_subset(data, path, {"qcd": n, "wz": n, "top": plan["top_jets"]}, seed=1)
    dataset = open_dataset(path)
    process, mass = dataset.column("process"), dataset.column("mass").astype(np.float64)
    runs = [(label, method, epochs) for label, method in METHODS.items()]
    runs[2:2] = [(f"NuRD fast x{k}", METHODS["NuRD fast"], k * epochs) for k in FAST_MULTIPLIERS[1:]]
    out = {}
    for label, method, n_epochs in runs:
        config = dataclasses.replace(method, epochs=n_epochs, batch_size=BATCH_SIZE)
        run_dir = tmp / f"run-{label.replace(' ', '_')}"
        start = time.perf_counter()
        summary = train(config, path, run_dir, show_progress=False)
        wall = time.perf_counter() - start
        run = load_run(run_dir)
        rows, _ = evaluation_rows(run, dataset, process)
        scores = score_dataset(run, dataset, rows)
        score = scores["nurd_md" if run.kind == "nurd" else "ae_mse"]
        p = process[rows]
        qcd = p == "qcd"
        fresh = summary.get("fresh_critic", {})
        out[label] = {
            "epochs": n_epochs, "selected": summary["best_epoch"], "train_seconds": summary["train_seconds"],
            "wall": wall,
            "info": fresh.get("info_estimate", math.nan), "critic_auc": fresh.get("critic_auc", math.nan),
            "corr": abs(pearson_correlation(score[qcd], mass[rows][qcd])),
            "auroc": auroc(score[np.isin(p, ("qcd", "wz"))], score[p == "top"]),
        }
        print(f"  decorrelation run {label}: " + ", ".join(f"{k} {v:.4g}" for k, v in out[label].items()),
              flush=True)
    rows = [[label, r["epochs"], r["selected"], r["train_seconds"], r["wall"], r["info"], r["critic_auc"],
             r["corr"], r["auroc"]] for label, r in out.items()]
    text = (f"**Decorrelation after a short training** (`nurdad.training.train` on the same {n_train:,} "
            f"training jets of QCD + W/Z, batch {BATCH_SIZE}, default splits, reference_frac = "
            f"{REFERENCE_FRAC:g}; fast NuRD also with {', '.join(f'{k}x' for k in FAST_MULTIPLIERS[1:])} the "
            "epochs; selected epoch = the one model selection kept (lowest validation CE + lambda * info); "
            "train s = the epochs' training time (validation, detector and fresh critic excluded); "
            "fresh critic = the run's end-of-training check on held-out background jets (nats; ~0 = "
            "independent; AUC 0.5 = blind); |corr| of the score with the mass on held-out QCD; AUROC top "
            "vs QCD+W/Z on held-out jets; the AE has no critic):\n\n"
            + common.table(["run", "epochs", "selected epoch", "train s", "run wall s",
                            "fresh-critic info (nats)", "fresh-critic AUC", "abs corr(score, mass) QCD",
                            "AUROC top"], rows))
    return text, out


def speedup_at_equal_decorrelation(dec: dict, facts: dict, epochs: int) -> tuple[str, bool]:
    """The goals' second line: how many more epochs fast needs to match the reference's fresh-critic
    estimate (at the decorrelation size), and the per-epoch ratio at the largest size divided by it."""
    ref = dec["NuRD reference"]
    matched = [k for k in FAST_MULTIPLIERS
               if dec["NuRD fast" + (f" x{k}" if k > 1 else "")]["info"] <= ref["info"] + INFO_TOLERANCE_NATS]
    head = (f"- fast NuRD >= 20x faster than the reference at equal or better decorrelation: per epoch "
            f"{facts['ref_over_fast']:.1f}x at {facts['n']:,} jets; ")
    if not matched:
        fast_best = min(dec[k]["info"] for k in dec if k.startswith("NuRD fast"))
        return (head + f"fast did not reach the reference's fresh-critic estimate ({ref['info']:.4f} nats, "
                f"tolerance {INFO_TOLERANCE_NATS}) within {FAST_MULTIPLIERS[-1]}x its {epochs} epochs "
                f"(best {fast_best:.4f}) -> FAIL"), False
    k = matched[0]
    fast = dec["NuRD fast" + (f" x{k}" if k > 1 else "")]
    effective = facts["ref_over_fast"] / k
    measured = ref["train_seconds"] / fast["train_seconds"]
    ok = effective >= 20
    return (head + f"fast needs {k}x the epochs to match the reference's fresh-critic estimate (fast "
            f"{fast['info']:.4f} vs reference {ref['info']:.4f} nats, tolerance {INFO_TOLERANCE_NATS}; "
            f"|corr| {fast['corr']:.3f} vs {ref['corr']:.3f}), so {facts['ref_over_fast']:.1f} / {k} = "
            f"{effective:.1f}x at {facts['n']:,} jets (measured at the decorrelation size: "
            f"{measured:.1f}x; assumes the epoch multiplier does not depend on n) -> "
            f"{common.verdict(ok)}"), ok


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    p = common.parser(__doc__.splitlines()[0], default_threads=1)
    p.add_argument("--sizes", type=int, nargs="+",
                   help="training-set sizes of part 1 (default: 2000 4000 8000 16000; quick 500 1000 2000)")
    args = p.parse_args()
    common.set_threads(args.threads)
    common.quiet_logging()
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `nurdad train` does
    plan = dict(PLANS["quick" if args.quick else "full"])
    if args.sizes:
        plan["sizes"] = tuple(sorted(args.sizes))
    record = common.Record("train_speed.py", args,
                           f"torch.set_num_threads({args.threads}), 1 inter-op thread")
    with tempfile.TemporaryDirectory(prefix="nurdad-train-speed-") as tmp:
        tmp = Path(tmp)
        print("part 1: speed", flush=True)
        results = {n: measure_size(args.data, n, plan, tmp) for n in plan["sizes"]}
        speed_text, facts = speed_tables(results, plan)
        print("part 2: decorrelation", flush=True)
        dec_text, dec = decorrelation(args.data, plan, tmp)
    equal_line, _ = speedup_at_equal_decorrelation(dec, facts, plan["decorrelation_epochs"])
    goals = "\n".join([
        "**Goals**",
        "",
        f"- fast NuRD <= 1.5x the classifier per epoch (at {facts['n']:,} jets): "
        f"{facts['fast_over_clf']:.2f}x -> {common.verdict(facts['fast_over_clf'] <= 1.5)}",
        equal_line,
        "",
        "Reading: times are medians of interleaved repetitions on a machine whose load average is shown "
        "above; ratios between models measured side by side are more trustworthy than absolute times. "
        "The reference's per-epoch time is extrapolated from a few encoder steps (its cost per step does "
        "not depend on the weights); part 2 measures whole reference epochs at its size. A short training "
        "leaves all models far from converged: part 2 compares the schedules at equal epochs, not their "
        "final decorrelation.",
    ])
    record.finish([*speed_text, dec_text, goals])


if __name__ == "__main__":
    main()
