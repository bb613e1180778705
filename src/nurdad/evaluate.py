"""`nurdad evaluate`: score trained runs on a dataset and collect every figure of merit.

Evaluation jets. On the run's own training data (the same files and jet count as its config.json)
only jets never trained on are used: the TEST split of the background processes and every jet of the
other processes (the anomalies). On any other data all jets are used.

For every score of a run (``nurd_md``, ``nurd_ml``, each ``d_<class>``; ``ae_mse``; and
``nurd_md_ddt``, ``ae_mse_ddt``: the main score made mass-independent on QCD by `nurdad.ddt`, the
classic competitor of a learned decorrelation; higher = more anomalous) the metrics are
`nurdad.metrics.summarize_detector` (AUROC and 1/eps_B at eps_S = 30%, 50% against QCD, W/Z and
their pooled mix; the AUROC against QCD inside the anomaly's central 68% mass window; Pearson and
distance correlation with the jet mass on QCD; 1/JSD of the QCD mass after cuts keeping 10% and 1%),
plus two robustness studies:

- ``robustness.mix``: `nurdad.metrics.robustness_vs_mix`, AUROC and 1/eps_B as the QCD share of the
  background runs over 0, 0.25, ..., 1;
- ``robustness.mass_shift``: the same summary when the QCD mass spectrum differs from training. QCD
  jets are drawn with replacement (fixed seed, as many as there are QCD jets) with probability
  proportional to a weight w(m) that gives them a new spectrum; see `MASS_SHIFTS`. Resampling reuses
  the unweighted metrics unchanged; the effective sample size (sum w)^2 / sum w^2 is recorded.

Outputs: a strict-JSON metrics file (inf -> "inf", nan -> null) and, next to it with suffix ``.npz``,
the per-jet arrays the report plots (``<run>__process``, ``<run>__mass``, ``<run>__score__<name>``)
and the mean image of each process (``image__<process>``), so the report never rescores.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nurdad.data import JetDataset, expand_paths, open_dataset
from nurdad.ddt import MassDecorrelation
from nurdad.errors import NurdadError, RunDirError
from nurdad.io import atomic_path, provenance, write_json
from nurdad.metrics import reweight_to_mass_spectrum, robustness_vs_mix, summarize_detector

log = logging.getLogger(__name__)

EVALUATION_FORMAT = 1
SCORE_PREFIXES = ("nurd_md", "nurd_ml", "d_", "ae_mse")
DDT_SCORES = ("nurd_md", "ae_mse")  # scores also reported after the mass decorrelation of `nurdad.ddt`
DDT_FIT_JETS = 20_000
DDT_MASS_BINS = 20
HARDER_SCALE_GEV = 100.0       # w(m) = exp(m / 100 GeV): demo QCD median mass 71 -> 98 GeV
MASS_SHIFTS = {
    "qcd_harder": "QCD jets resampled with weight exp(m / 100 GeV): a harder QCD mass spectrum",
    "qcd_as_wz": "QCD jets resampled to the W/Z mass spectrum (10 GeV bins, "
                 "metrics.reweight_to_mass_spectrum)",
}
MEAN_IMAGE_MAX_JETS = 10_000   # per process; the mean image converges long before
_CHUNK_ROWS = 4096


@dataclass
class RunScores:
    """Per-jet scores of one run on its evaluation jets (arrays aligned, length N)."""

    name: str                      # unique key of the run in the metrics
    run_dir: Path
    model: str                     # 'nurd' | 'ae'
    lambda_penalty: float | None   # NuRD's lambda (None for the autoencoder)
    backgrounds: tuple[str, ...]
    process: np.ndarray            # (N,) str
    mass: np.ndarray               # (N,) GeV
    scores: dict[str, np.ndarray]  # name -> (N,), higher = more anomalous
    summary: dict = field(default_factory=dict)  # the run's summary.json
    on_training_data: bool = False
    dependence: str | None = None  # NuRD's dependence penalty ('disco' | 'critic'), None for the AE

    @property
    def label(self) -> str:
        return run_label(self.model, self.lambda_penalty, self.dependence)


def _nurd_stem(dependence: str | None) -> str:
    return "NuRD critic" if dependence == "critic" else "NuRD"


def run_label(model: str, lambda_penalty: float | None, dependence: str | None = None) -> str:
    """'AE', 'classifier (λ=0)', 'NuRD (λ=<value>)' or, with the critic penalty, 'NuRD critic (λ=...)'."""
    if model == "ae":
        return "AE"
    if not lambda_penalty:
        return "classifier (λ=0)"
    return f"{_nurd_stem(dependence)} (λ={lambda_penalty:g})"


def method_name(model: str, lambda_penalty: float | None, score: str, dependence: str | None = None) -> str:
    """Display name of one score of one run: 'NuRD-MD (λ=1)', 'classifier-ML (λ=0)', 'AE (MSE)'."""
    if model == "ae":
        return {"ae_mse": "AE (MSE)", "ae_mse_ddt": "AE (MSE+DDT)"}.get(score, f"AE {score}")
    stem = _nurd_stem(dependence) if lambda_penalty else "classifier"
    kind = {"nurd_md": "MD", "nurd_ml": "ML", "nurd_md_ddt": "MD+DDT"}.get(score)
    suffix = f"(λ={lambda_penalty or 0:g})"
    return f"{stem}-{kind} {suffix}" if kind else f"{stem} {score} {suffix}"


# --------------------------------------------------------------------------------------- scoring
def _same_file(recorded: str, actual: Path) -> bool:
    try:
        return os.path.samefile(recorded, actual)
    except OSError:  # the recorded path is relative to another working directory, or gone
        return Path(recorded).name == actual.name


def is_training_data(run, dataset: JetDataset) -> bool:
    """Whether `dataset` is the data `run` (a `nurdad.scoring.TrainedRun`) was trained on."""
    return (run.n_jets == dataset.n_jets and len(run.data_files) == len(dataset.paths)
            and all(_same_file(r, a) for r, a in zip(run.data_files, dataset.paths, strict=True)))


def evaluation_rows(run, dataset: JetDataset, process: np.ndarray) -> tuple[np.ndarray, bool]:
    """(rows, on_training_data): jets never trained on when `dataset` is the training data, else all.

    On the training data: the TEST split of the background and training processes plus every jet of
    the other processes. The same rows for every run with the same split seed and fractions.
    """
    from nurdad.training import TEST, training_classes

    if not is_training_data(run, dataset):
        return np.arange(dataset.n_jets), False
    split = run.split()
    if len(split) != dataset.n_jets:
        raise RunDirError(f"{run.run_dir}: split.npz has {len(split)} rows, the data {dataset.n_jets}")
    seen = np.isin(process, list({*run.config.backgrounds, *training_classes(run.config)}))
    return np.flatnonzero(~seen | (split == TEST)), True


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    if not path.exists():
        raise RunDirError(f"{run_dir}: no summary.json; is the run finished?")
    return json.loads(path.read_text())


def score_run(run_dir: str | os.PathLike, dataset: JetDataset, name: str | None = None) -> RunScores:
    """Load a finished run and score its evaluation jets of `dataset` (see the module docstring)."""
    from nurdad.scoring import load_run, score_dataset

    run = load_run(run_dir)
    process = dataset.column("process")
    rows, own = evaluation_rows(run, dataset, process)
    log.info("%s: scoring %d jets (%s)", run.run_dir, len(rows),
             "held-out jets of its training data" if own else "all jets")
    raw = score_dataset(run, dataset, rows)
    scores = {k: v.astype(np.float64) for k, v in raw.items() if k.startswith(SCORE_PREFIXES)}
    mass = dataset.column("mass")[rows].astype(np.float64)
    scores.update(ddt_scores(run, dataset if own else None, scores, mass))
    lam = run.config.nurd.lambda_penalty if run.kind == "nurd" else None
    dependence = run.config.nurd.dependence if run.kind == "nurd" else None
    return RunScores(name or Path(run_dir).name, Path(run_dir).resolve(), run.kind, lam,
                     tuple(run.config.backgrounds), process[rows], mass, scores, _summary(Path(run_dir)),
                     own, dependence)


def ddt_scores(run, training_data: JetDataset | None, scores: dict[str, np.ndarray],
               mass: np.ndarray) -> dict[str, np.ndarray]:
    """'<score>_ddt' for the run's main score: its quantile among the run's own training QCD jets of
    the same mass (`nurdad.ddt`, fitted on at most `DDT_FIT_JETS` of them). `training_data` is the
    run's training dataset when already open; otherwise its recorded files are opened (skipped with
    a warning when they are gone)."""
    from nurdad.scoring import score_dataset
    from nurdad.training import TRAIN

    keys = [k for k in DDT_SCORES if k in scores]
    if not keys:
        return {}
    if training_data is None:
        try:
            training_data = open_dataset(run.data_files)
        except NurdadError as err:
            log.warning("%s: no DDT scores, its training data cannot be read (%s)", run.run_dir, err)
            return {}
    qcd = np.flatnonzero((run.split() == TRAIN) & (training_data.column("process") == "qcd"))
    if len(qcd) > DDT_FIT_JETS:
        qcd = np.sort(np.random.default_rng(0).choice(qcd, DDT_FIT_JETS, replace=False))
    fit = score_dataset(run, training_data, qcd)
    fit_mass = training_data.column("mass")[qcd]
    bins = min(DDT_MASS_BINS, max(1, len(qcd) // 100))  # >= 100 QCD jets per mass bin
    return {f"{k}_ddt": MassDecorrelation(bins).fit(fit[k], fit_mass).transform(scores[k], mass)
            for k in keys}


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, prefixed with the parent's name (then numbered) where they collide; '__'
    (the separator of the npz keys) becomes '_'."""
    names = [_clean(p.name) for p in run_dirs]
    for i, p in enumerate(run_dirs):
        if names.count(_clean(p.name)) > 1:
            names[i] = _clean(f"{p.parent.name}_{p.name}")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n}_{seen[n]}"
    return names


def _clean(name: str) -> str:
    while "__" in name:
        name = name.replace("__", "_")
    return name if name != "image" else "run_image"


def mean_images(dataset: JetDataset, max_jets: int = MEAN_IMAGE_MAX_JETS) -> dict[str, np.ndarray]:
    """Mean image (H, W) of each process over its first `max_jets` jets, read in chunks."""
    process = dataset.column("process")
    out = {}
    for name in sorted(set(process)):
        rows = np.flatnonzero(process == name)[:max_jets]
        total = np.zeros(dataset.image_shape, dtype=np.float64)
        for start in range(0, len(rows), _CHUNK_ROWS):
            total += dataset.read_images(rows[start : start + _CHUNK_ROWS]).sum(axis=0)
        out[name] = total / len(rows)
    return out


# --------------------------------------------------------------------------------------- metrics
def shifted_qcd_weights(mass_by_process: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-QCD-jet weights (N_qcd,) of each `MASS_SHIFTS` scenario that the data allows."""
    qcd = mass_by_process["qcd"]
    out = {"qcd_harder": np.exp((qcd - qcd.mean()) / HARDER_SCALE_GEV)}
    if len(mass_by_process.get("wz", ())) >= 2:
        out["qcd_as_wz"] = reweight_to_mass_spectrum(qcd, mass_by_process["wz"])
    return out


def mass_shift_samples(mass_by_process: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict]:
    """Per scenario: {'pick': (N_qcd,) QCD indices drawn with p ~ w, 'effective_jets': float}."""
    rng = np.random.default_rng([seed, 11])
    out = {}
    for shift, weights in shifted_qcd_weights(mass_by_process).items():
        if weights.sum() > 0:
            out[shift] = {"pick": rng.choice(len(weights), len(weights), p=weights / weights.sum()),
                          "effective_jets": float(weights.sum() ** 2 / (weights**2).sum())}
    return out


def score_metrics(scores: np.ndarray, process: np.ndarray, mass: np.ndarray,
                  backgrounds: Sequence[str], anomalies: Sequence[str], seed: int = 0,
                  shifts: dict[str, dict] | None = None) -> dict:
    """Every figure of merit of one score (N,) over jets with `process` (N,) and `mass` (N,) GeV.

    Returns summarize_detector's dict plus 'robustness': {'mix': {anomaly: [...]},
    'mass_shift': {scenario: {...}}} (each study only when its processes are present). `shifts`:
    the QCD resamples of `mass_shift_samples` (computed here when not given).
    """
    keep = [*backgrounds, *anomalies]
    by_process = {p: scores[process == p] for p in keep if (process == p).sum() >= 2}
    masses = {p: mass[process == p] for p in by_process}
    result = summarize_detector(by_process, masses, backgrounds, seed=seed)
    robustness: dict = {"mix": {}, "mass_shift": {}}
    if len(backgrounds) == 2 and all(b in by_process for b in backgrounds):
        for anomaly in anomalies:
            if anomaly in by_process:
                robustness["mix"][anomaly] = robustness_vs_mix(by_process, anomaly,
                                                               background=backgrounds, seed=seed)
    if "qcd" in by_process:
        shifts = mass_shift_samples(masses, seed) if shifts is None else shifts
        for shift, sample in shifts.items():
            pick = sample["pick"]
            shifted = summarize_detector({**by_process, "qcd": by_process["qcd"][pick]},
                                         {**masses, "qcd": masses["qcd"][pick]}, backgrounds, seed=seed)
            shifted.pop("n_jets")
            robustness["mass_shift"][shift] = {
                **shifted, "qcd_median_mass_gev": float(np.median(masses["qcd"][pick])),
                "effective_jets": sample["effective_jets"]}
    result["robustness"] = robustness
    return result


def run_metrics(run: RunScores, anomalies: Sequence[str] | None = None) -> dict:
    """The metrics entry of one run: identity, cost and `score_metrics` for each of its scores."""
    present = sorted(set(run.process))
    if anomalies is None:  # the talk's anomaly (top) first: sweeps and the report lead with it
        anomalies = sorted((p for p in present if p not in run.backgrounds), key=lambda p: (p != "top", p))
    missing = [a for a in anomalies if a not in present]
    if missing:
        raise NurdadError(f"--anomalies: no jets of process {missing[0]!r} among {present}")
    clash = [a for a in anomalies if a in run.backgrounds]
    if clash:
        raise NurdadError(f"--anomalies: {clash[0]!r} is a background of {run.run_dir}")
    if not anomalies:
        raise NurdadError(f"{run.run_dir}: the evaluation data has no anomaly process (only {present})")
    model_params = int(run.summary.get("parameters", 0))
    detector_params = int(run.summary.get("detector_parameters", 0))
    entry = {
        "run_dir": str(run.run_dir), "model": run.model, "label": run.label,
        "lambda": run.lambda_penalty, "dependence": run.dependence, "backgrounds": list(run.backgrounds),
        "anomalies": list(anomalies),
        "on_training_data": run.on_training_data,
        "evaluation_jets": ("test split of the backgrounds + all anomaly jets" if run.on_training_data
                            else "all jets of the data"),
        "parameters": {"model": model_params, "detector": detector_params,
                       "total": model_params + detector_params},
        "macs_per_jet": run.summary.get("macs_per_jet"), "best_epoch": run.summary.get("best_epoch"),
        "fresh_critic": run.summary.get("fresh_critic"),
        "scores": {},
    }
    qcd = run.process == "qcd"
    shifts = None
    if qcd.sum() >= 2:
        shifts = mass_shift_samples({"qcd": run.mass[qcd], "wz": run.mass[run.process == "wz"]})
    for name, values in run.scores.items():
        log.info("%s: metrics of %s", run.name, name)
        entry["scores"][name] = {
            "method": method_name(run.model, run.lambda_penalty, name, run.dependence),
            **score_metrics(values, run.process, run.mass, run.backgrounds, anomalies, shifts=shifts),
        }
    return entry


def strict_json(obj):
    """`obj` with nan -> None and +-inf -> 'inf' / '-inf', numpy scalars -> Python (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def as_float(value) -> float:
    """A metric read back from the JSON as a float (None -> nan, 'inf' -> inf)."""
    return math.nan if value is None else float(value)


def evaluate_scores(runs: Sequence[RunScores], anomalies: Sequence[str] | None = None,
                    data: dict | None = None) -> dict:
    """The metrics dict (strict JSON) of already scored runs; see the module docstring."""
    return strict_json({
        "format": EVALUATION_FORMAT, "data": data or {}, "provenance": provenance(),
        "mass_shifts": MASS_SHIFTS,
        "runs": {run.name: run_metrics(run, anomalies) for run in runs},
    })


def scores_path(metrics_path: str | os.PathLike) -> Path:
    """Where the per-jet arrays of a metrics file live: the same name with suffix .npz."""
    return Path(metrics_path).with_suffix(".npz")


def save_scores(path: str | os.PathLike, runs: Sequence[RunScores],
                images: dict[str, np.ndarray]) -> None:
    """Write the per-jet arrays (see the module docstring) atomically."""
    arrays = {f"image__{p}": im.astype(np.float32) for p, im in images.items()}
    for run in runs:
        arrays[f"{run.name}__process"] = run.process.astype(str)
        arrays[f"{run.name}__mass"] = run.mass.astype(np.float32)
        for name, values in run.scores.items():
            arrays[f"{run.name}__score__{name}"] = values
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_scores(path: str | os.PathLike) -> dict[str, dict]:
    """The arrays of `save_scores` as {'images': {process: (H, W)}, '<run>': {'process', 'mass',
    'scores': {name: (N,)}}}."""
    path = Path(path)
    if not path.exists():
        raise NurdadError(f"{path}: no per-jet scores; run `nurdad evaluate` again")
    out: dict[str, dict] = {"images": {}}
    with np.load(path) as npz:
        for key in npz.files:
            head, _, rest = key.partition("__")
            if head == "image":
                out["images"][rest] = npz[key]
                continue
            run = out.setdefault(head, {"scores": {}})
            if rest.startswith("score__"):
                run["scores"][rest[len("score__"):]] = npz[key]
            else:
                run[rest] = npz[key]
    return out


def _data_record(dataset: JetDataset) -> dict:
    process = dataset.column("process")
    names, counts = np.unique(process, return_counts=True)
    half_width = dataset.files[0].config.get("generate", {}).get("images", {}).get("half_width")
    return {"files": [str(p.resolve()) for p in dataset.paths], "n_jets": dataset.n_jets,
            "processes": dict(zip(names.tolist(), counts.tolist(), strict=True)),
            "image_shape": list(dataset.image_shape), "image_half_width": half_width}


def metrics_current(path: str | os.PathLike, run_dirs: Sequence[str | os.PathLike], data=None) -> bool:
    """Whether `path` holds an evaluation of exactly `run_dirs`, newer than each run, on `data`
    (paths) if given, with its per-jet scores."""
    path = Path(path)
    run_dirs = [Path(d).resolve() for d in run_dirs]
    if not path.exists() or not scores_path(path).exists():
        return False
    metrics = json.loads(path.read_text())
    if metrics.get("format") != EVALUATION_FORMAT or {
            Path(r["run_dir"]) for r in metrics.get("runs", {}).values()} != set(run_dirs):
        return False
    if data is not None:
        if isinstance(data, JetDataset):
            files = data.paths
        else:
            files = expand_paths([data] if isinstance(data, str | os.PathLike) else data)
        if [str(p.resolve()) for p in files] != metrics["data"].get("files"):
            return False
    summaries = [d / "summary.json" for d in run_dirs]
    if not all(s.exists() for s in summaries):
        return False
    newest_run = max(s.stat().st_mtime for s in summaries)
    return path.stat().st_mtime >= newest_run


def evaluate_runs(run_dirs: Iterable[str | os.PathLike], data, anomalies: Sequence[str] | None = None,
                  out: str | os.PathLike | None = None) -> dict:
    """Score every run on `data` (paths or a JetDataset) and return the metrics dict.

    With `out`, also write the metrics JSON there and the per-jet arrays to `scores_path(out)`.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise NurdadError("evaluate: no run directory given")
    dataset = data if isinstance(data, JetDataset) else open_dataset(data)
    dataset.validate()  # NaN/negative pixels: name the file, not the representation
    runs = [score_run(d, dataset, name) for d, name in zip(run_dirs, _unique_names(run_dirs), strict=True)]
    metrics = evaluate_scores(runs, anomalies, _data_record(dataset))
    if out is not None:
        metrics["scores_file"] = scores_path(out).name
        save_scores(scores_path(out), runs, mean_images(dataset))
        write_json(out, metrics)
    return metrics


# ----------------------------------------------------------------------------------------- table
def ordered_runs(metrics: dict) -> list[tuple[str, dict]]:
    """(name, entry) of the runs: NuRD by increasing lambda, then the lambda = 0 classifier, then AE."""
    def key(item):
        run = item[1]
        group = 2 if run["model"] == "ae" else 0 if run["lambda"] else 1
        return group, run["lambda"] or 0.0, item[0]

    return sorted(metrics["runs"].items(), key=key)



def _ordered_scores(scores: dict) -> list[dict]:
    """The headline scores first (NURD-MD, NURD-ML, AE MSE), then the per-class distances."""
    main = ("nurd_md", "nurd_md_ddt", "nurd_ml", "ae_mse", "ae_mse_ddt")
    return [scores[k] for k in sorted(scores, key=lambda k: (main.index(k) if k in main else len(main), k))]


TABLE_HEADER = ("method", "anomaly", "AUROC(mix)", "R30(mix)", "|corr m|", "1/JSD@10%", "params")


def table_rows(metrics: dict) -> list[tuple]:
    """One row per (run, score, anomaly): the columns of `TABLE_HEADER`, numbers as floats."""
    rows = []
    for _, run in ordered_runs(metrics):
        for score in _ordered_scores(run["scores"]):
            qcd = score.get("qcd_mass", {})
            for anomaly, res in score["anomalies"].items():
                mix = res["vs_mix"]
                rows.append((score["method"], anomaly, as_float(mix["auroc"]),
                             as_float(mix["rejection_30"]), abs(as_float(qcd.get("pearson"))),
                             as_float(qcd.get("inverse_jsd_10")), run["parameters"]["total"]))
    return rows


def format_table(metrics: dict) -> str:
    """The evaluation table as aligned text."""
    rows = table_rows(metrics)
    width = max([len(TABLE_HEADER[0]), *(len(r[0]) for r in rows)])
    lines = [f"{TABLE_HEADER[0]:<{width}}  {TABLE_HEADER[1]:<8}"
             + "".join(f"{h:>11}" for h in TABLE_HEADER[2:])]
    for method, anomaly, auc, r30, corr, ijsd, params in rows:
        lines.append(f"{method:<{width}}  {anomaly:<8}{auc:>11.3f}{r30:>11.1f}{corr:>11.3f}"
                     f"{ijsd:>11.1f}{params:>11d}")
    return "\n".join(lines)
