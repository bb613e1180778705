"""`nurdad sweep`: NuRD at several lambdas (plus the autoencoder), evaluated, and the trade-off plot.

The penalty weight lambda trades separation for independence of the jet mass: lambda = 0 is the plain
QCD-vs-W/Z classifier (good AUROC, mass-sculpting), large lambda removes the mass information from
the representation. One run directory per lambda, ``DIR/lambda_<value>``, plus ``DIR/ae``; finished
runs (summary.json present) are skipped and interrupted ones resumed, so rerunning the same command
continues a sweep. Outputs: ``DIR/metrics.json`` (+ ``.npz``, see `nurdad.evaluate`),
``DIR/sweep.json`` and ``DIR/tradeoff.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from nurdad.data import JetDataset, expand_paths
from nurdad.errors import ConfigError
from nurdad.evaluate import as_float, evaluate_runs, metrics_current, strict_json
from nurdad.io import write_json

log = logging.getLogger(__name__)

DEFAULT_LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)  # the DisCo penalty acts from ~0.01 (RESULTS.md)
SWEEP_SCORE = "nurd_md"   # the NuRD score of the sweep points (NURD-MD)


def lambda_dir(out: Path, value: float) -> Path:
    return out / f"lambda_{value:g}"


def train_or_resume(config, data, run_dir: Path, show_progress: bool = True) -> None:
    """Train `config` into `run_dir` unless it is finished; resume it if it was interrupted."""
    from nurdad.training import train

    if (run_dir / "summary.json").exists():
        log.info("%s: finished, skipped", run_dir)
        return
    resume = (run_dir / "config.json").exists()
    log.info("%s: %s", run_dir, "resuming" if resume else "training")
    train(config, data, run_dir, resume=resume, show_progress=show_progress)


def sweep_point(run: dict, score: str, anomaly: str) -> dict:
    """The trade-off numbers of one score of one evaluated run (floats; nan where undefined)."""
    entry = run["scores"][score]
    qcd = entry.get("qcd_mass", {})
    point = {"run_dir": run["run_dir"], "lambda": run["lambda"], "score": score,
             "method": entry["method"],
             "auroc_vs_mix": as_float(entry["anomalies"][anomaly]["vs_mix"]["auroc"]),
             "abs_pearson": abs(as_float(qcd.get("pearson"))),
             "distance_corr": as_float(qcd.get("distance_corr")),
             "inverse_jsd_10": as_float(qcd.get("inverse_jsd_10")),
             "parameters": run["parameters"]["total"]}
    if run.get("fresh_critic"):
        point["fresh_critic_info"] = run["fresh_critic"].get("info_estimate")
    return point


def sweep_summary(metrics: dict, lambda_runs: dict[float, str], ae_run: str | None) -> dict:
    """sweep.json (strict JSON): one point per lambda (NURD-MD), the AE reference and the post-hoc
    DDT-decorrelated scores of the lambda = 0 classifier and the AE, for the first anomaly."""
    first = next(iter(metrics["runs"].values()))
    anomaly = first["anomalies"][0]
    ddt = [(lambda_runs.get(0.0), "nurd_md_ddt"), (ae_run, "ae_mse_ddt")]
    return strict_json({
        "anomaly": anomaly, "score": SWEEP_SCORE,
        "points": [sweep_point(metrics["runs"][name], SWEEP_SCORE, anomaly)
                   for _, name in sorted(lambda_runs.items())],
        "ae": sweep_point(metrics["runs"][ae_run], "ae_mse", anomaly) if ae_run else None,
        "ddt": [sweep_point(metrics["runs"][name], score, anomaly) for name, score in ddt
                if name and score in metrics["runs"][name]["scores"]],
    })


def format_sweep(sweep: dict) -> str:
    """The sweep points (and the AE) as aligned text."""
    keys = ("auroc_vs_mix", "abs_pearson", "distance_corr", "inverse_jsd_10")
    lines = [f"{'lambda':>8}{'AUROC':>9}{'|corr m|':>10}{'dCor':>8}{'1/JSD@10%':>11}"
             f"   ({sweep['anomaly']} vs QCD+W/Z; QCD mass)"]
    for point in [*sweep["points"], *([sweep["ae"]] if sweep.get("ae") else []), *sweep.get("ddt", [])]:
        name = "AE" if point["lambda"] is None else f"{point['lambda']:g}"
        name += "+DDT" if point["score"].endswith("_ddt") else ""
        cells = (f"{as_float(point[k]):>{w}.3f}" for k, w in zip(keys, (9, 10, 8, 11), strict=True))
        lines.append(f"{name:>8}" + "".join(cells))
    return "\n".join(lines)


def run_sweep(data, out: str | os.PathLike, config=None, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
              with_ae: bool = True, anomalies: Sequence[str] | None = None,
              show_progress: bool = True) -> dict:
    """Train (or resume) NuRD at each lambda and the AE on `data`, evaluate all, write the outputs.

    `config` is the TrainConfig every run starts from (its model and lambda are overridden; the AE
    uses the same epochs, batch size, seed and splits). Returns the sweep summary.
    """
    from nurdad.training import TrainConfig

    out = Path(out)
    if not isinstance(data, JetDataset):  # absolute paths in the runs' config.json: cwd-independent
        data = [p.resolve() for p in expand_paths([data] if isinstance(data, str | os.PathLike) else data)]
    config = config or TrainConfig()
    if not lambdas:
        raise ConfigError("--lambdas: expected at least one value")
    if any(not (v >= 0 and math.isfinite(v)) for v in lambdas):
        raise ConfigError(f"--lambdas: expected finite values >= 0, got {list(lambdas)}")
    if len({f"{v:g}" for v in lambdas}) != len(lambdas):
        raise ConfigError(f"--lambdas: duplicated values in {list(lambdas)}")
    runs: dict[float, Path] = {}
    for value in lambdas:
        nurd = dataclasses.replace(config.nurd, lambda_penalty=float(value))
        runs[float(value)] = lambda_dir(out, value)
        train_or_resume(dataclasses.replace(config, model="nurd", nurd=nurd), data, runs[float(value)],
                        show_progress)
    run_dirs = list(runs.values())
    if with_ae:
        train_or_resume(dataclasses.replace(config, model="ae"), data, out / "ae", show_progress)
        run_dirs.append(out / "ae")
    metrics_path = out / "metrics.json"
    if anomalies is None and metrics_current(metrics_path, run_dirs, data):
        log.info("%s is current; not evaluating again", metrics_path)
        metrics = json.loads(metrics_path.read_text())
    else:
        metrics = evaluate_runs(run_dirs, data, anomalies, out=metrics_path)
    names = {value: path.name for value, path in runs.items()}
    sweep = sweep_summary(metrics, names, "ae" if with_ae else None)
    write_json(out / "sweep.json", sweep)
    from nurdad.report import plot_tradeoff

    plot_tradeoff(sweep, out / "tradeoff.png")
    return sweep
