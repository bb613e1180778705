"""`nurdad report`: one self-contained HTML page (figures embedded as PNG) from runs and sweeps.

The page is built from `nurdad.evaluate`'s outputs (metrics JSON + per-jet npz), never rescoring
when they are current; it evaluates the runs first when they are missing or older than a run.
Sections: the talk's table, all metrics, robustness (background mix, QCD mass spectrum), ROC curves,
score distributions, QCD mass sculpting, mean jet images, the NuRD weight diagnostic, training
curves, the lambda trade-off (sweeps) and the provenance of everything shown.

Conventions (METHOD.md): anomaly = positive class; ROC as 1/eps_B against eps_S on a log axis;
sculpting = QCD mass after score cuts keeping 10% and 1% of QCD, against all QCD; higher score =
more anomalous.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nurdad.errors import NurdadError, RunDirError
from nurdad.evaluate import (
    TABLE_HEADER,
    as_float,
    evaluate_runs,
    load_scores,
    metrics_current,
    ordered_runs,
    scores_path,
    table_rows,
)
from nurdad.io import atomic_path, provenance
from nurdad.metrics import DEFAULT_MASS_BINS_GEV, mass_sculpting, roc_curve_points

log = logging.getLogger(__name__)

PLOT_SCORES = ("nurd_md", "nurd_ml", "ae_mse")  # the d_<class> scores appear in the tables only
KEEP_FRACTIONS = (0.1, 0.01)
TALK_REFERENCE = ("The talk reports AUC 0.94 and 0.83 for NuRD at two λ, 0.88 for a plain "
                  "autoencoder, and |corr(score, mass)| = 0.012 on QCD.")
_STYLE_OVERRIDES = {"font.size": 15, "axes.labelsize": 15, "axes.titlesize": 15, "legend.fontsize": 11,
                    "xtick.labelsize": 13, "ytick.labelsize": 13}
_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em;margin:1em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
.muted{color:#666;font-size:.9em}
"""


# ---------------------------------------------------------------------------------------- inputs
@dataclass
class ReportInputs:
    run_dirs: list[Path]
    sweep_dirs: list[Path]


def collect_inputs(paths: Sequence[str | os.PathLike]) -> ReportInputs:
    """Run directories (config.json) and sweep directories (sweep.json: the runs it names)."""
    runs: list[Path] = []
    sweeps: list[Path] = []
    for item in map(Path, paths):
        if (item / "sweep.json").exists():
            sweeps.append(item)
            sweep = json.loads((item / "sweep.json").read_text())
            recorded = [Path(p["run_dir"]) for p in [*sweep["points"], sweep.get("ae") or {}] if p]
            # a moved sweep folder still holds its runs under their own names
            runs += [r if r.exists() else item / r.name for r in recorded]
        elif (item / "config.json").exists():
            runs.append(item)
        else:
            raise RunDirError(f"{item}: neither a run directory (config.json) nor a sweep (sweep.json)")
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return ReportInputs(unique, sweeps)


def resolve_metrics(inputs: ReportInputs, out: Path, metrics_path=None, data=None) -> Path:
    """The metrics file to show: `metrics_path`, else a sweep's metrics.json or
    `<report>.metrics.json`, (re)evaluated when missing or stale (on `data`, default: the first
    run's training data)."""
    if metrics_path is not None:
        if not Path(metrics_path).exists():
            raise NurdadError(f"{metrics_path}: no such metrics file")
        return Path(metrics_path)
    for d in inputs.run_dirs:
        if not (d / "summary.json").exists():
            raise RunDirError(f"{d}: no summary.json; is the run finished?")
    only_sweep = len(inputs.sweep_dirs) == 1 and all(d.parent == inputs.sweep_dirs[0].resolve()
                                                      for d in inputs.run_dirs)
    path = inputs.sweep_dirs[0] / "metrics.json" if only_sweep else out.with_suffix(".metrics.json")
    if not metrics_current(path, inputs.run_dirs, data):
        if data is None:
            data = json.loads((inputs.run_dirs[0] / "config.json").read_text())["data"]
            missing = [p for p in data if not Path(p).exists()]
            if missing:
                raise NurdadError(f"{inputs.run_dirs[0]}: its training data {missing[0]} is not found "
                                  "from here; pass --data")
        log.info("evaluating %d runs into %s", len(inputs.run_dirs), path)
        evaluate_runs(inputs.run_dirs, data, out=path)
    return path


# --------------------------------------------------------------------------------------- figures
def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


@dataclass
class Method:
    """One plotted score of one run."""

    run: str
    score: str
    name: str
    color: str


def plot_methods(metrics: dict) -> list[Method]:
    """The plotted scores (`PLOT_SCORES`) of every run, in `ordered_runs` order, with fixed colours."""
    from matplotlib import colormaps

    found = [(run, score, r["scores"][score]["method"]) for run, r in ordered_runs(metrics)
             for score in PLOT_SCORES if score in r["scores"]]
    palette = colormaps["tab10" if len(found) <= 10 else "tab20"].colors
    return [Method(run, score, name, palette[i % len(palette)])
            for i, (run, score, name) in enumerate(found)]


def _panels(n: int, width: float, height: float, ncols: int = 3):
    """A figure with a grid of n panels (width x height inches each); returns (fig, the n axes),
    with the unused cells of the last row hidden."""
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(width * ncols, height * nrows, nrows, ncols)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n]


def _by_process(arrays: dict, run: str, score: str) -> dict[str, np.ndarray]:
    process = arrays[run]["process"]
    values = arrays[run]["scores"][score]
    return {p: values[process == p] for p in dict.fromkeys(process.tolist())}


def fig_roc(metrics, arrays, methods, anomaly: str):
    fig, axes = _figure(8, 6.5)
    ax = axes[0, 0]
    eps = np.linspace(0.01, 1, 100)
    ax.plot(eps, 1 / eps, ":", color="grey", label="random")
    for m in methods:
        run = metrics["runs"][m.run]
        by_process = _by_process(arrays, m.run, m.score)
        bkg = [p for p in run["backgrounds"] if p in by_process]
        if anomaly not in by_process or not bkg:
            continue
        eps_b, eps_s = roc_curve_points(np.concatenate([by_process[p] for p in bkg]), by_process[anomaly])
        ok = eps_b > 0
        auc = as_float(run["scores"][m.score]["anomalies"][anomaly]["vs_mix"]["auroc"])
        ax.plot(eps_s[ok], 1 / eps_b[ok], color=m.color, label=f"{m.name}: AUC {auc:.3f}")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"signal efficiency ε_S ({anomaly})")
    ax.set_ylabel("background rejection 1/ε_B (QCD + W/Z)")
    ax.legend(loc="upper right")
    return fig


def fig_score_distributions(arrays, methods):
    fig, axes = _panels(len(methods), 5, 4)
    for ax, m in zip(axes, methods, strict=True):
        by_process = _by_process(arrays, m.run, m.score)
        pooled = np.concatenate(list(by_process.values()))
        lo, hi = np.quantile(pooled, [0.001, 0.995])
        edges = np.linspace(lo, hi if hi > lo else lo + 1, 41)
        for p, values in by_process.items():
            ax.hist(np.clip(values, edges[0], edges[-1]), edges, density=True, histtype="step",
                    linewidth=1.5, label=p)
        ax.set_yscale("log")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4), useOffset=False)
        ax.set_title(m.name)
        ax.set_xlabel("score (higher = more anomalous)")
        ax.set_ylabel("density")
        ax.legend()
    return fig


def fig_sculpting(metrics, arrays, methods):
    methods = [m for m in methods if "qcd" in _by_process(arrays, m.run, m.score)]
    if not methods:
        return None
    fig, axes = _panels(len(methods), 5, 4)
    edges = DEFAULT_MASS_BINS_GEV
    for ax, m in zip(axes, methods, strict=True):
        qcd = arrays[m.run]["process"] == "qcd"
        score, mass = arrays[m.run]["scores"][m.score][qcd], arrays[m.run]["mass"][qcd]
        ax.hist(mass, edges, density=True, histtype="stepfilled", color="lightgrey", label="all QCD")
        qcd_metrics = metrics["runs"][m.run]["scores"][m.score].get("qcd_mass", {})
        for keep, color in zip(KEEP_FRACTIONS, ("tab:blue", "tab:red"), strict=True):
            passing = score >= mass_sculpting(score, mass, keep, edges)["threshold"]
            inv = as_float(qcd_metrics.get(f"inverse_jsd_{100 * keep:g}"))
            ax.hist(mass[passing], edges, density=True, histtype="step", linewidth=1.8, color=color,
                    label=f"{keep:.0%} kept, 1/JSD {inv:.3g}")
        ax.set_title(m.name)
        ax.set_xlabel("jet mass [GeV]")
        ax.set_ylabel("density")
        ax.legend()
    return fig


def fig_mean_images(images: dict[str, np.ndarray], half_width: float | None):
    from matplotlib.colors import LogNorm

    fig, axes = _panels(len(images), 4.2, 3.8, ncols=4)
    extent = None if half_width is None else (-half_width, half_width, -half_width, half_width)
    positive = [im[im > 0] for im in images.values() if (im > 0).any()]
    vmin = max(min(float(p.min()) for p in positive), 1e-6) if positive else 1e-6
    vmax = max(float(p.max()) for p in positive) if positive else 1.0
    for ax, (name, image) in zip(axes, images.items(), strict=True):
        shown = ax.imshow(np.clip(image, vmin, None), origin="lower", extent=extent, cmap="viridis",
                          norm=LogNorm(vmin=vmin, vmax=vmax))
        ax.set_title(name)
        ax.set_xlabel("Δη'" if extent else "pixel")
        ax.set_ylabel("Δφ'" if extent else "pixel")
        fig.colorbar(shown, ax=ax, label="mean pixel pT fraction")
    return fig


def fig_robustness_mix(metrics, methods, anomaly: str):
    fig, axes = _figure(8, 5.5)
    ax = axes[0, 0]
    plotted = False
    for m in methods:
        rows = metrics["runs"][m.run]["scores"][m.score]["robustness"]["mix"].get(anomaly)
        if rows:
            ax.plot([r["qcd_fraction"] for r in rows], [as_float(r["auroc"]) for r in rows], "o-",
                    color=m.color, label=m.name)
            plotted = True
    if not plotted:
        return None
    ax.set_xlabel("QCD fraction of the background (rest W/Z)")
    ax.set_ylabel(f"AUROC ({anomaly} vs background)")
    ax.legend()
    return fig


def _read_history(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows])
            for k in rows[0]} if rows else {}


def fig_training(history: dict[str, np.ndarray], title: str):
    losses = [k for k in history if k.startswith(("train_", "val_")) and
              k.endswith(("loss", "ce", "mse", "selection"))]
    other = [k for k in history if k.startswith(("train_", "val_")) and k.endswith(("info", "accuracy"))]
    fig, axes = _figure(12 if other else 6.5, 4.5, 1, 2 if other else 1)
    for ax, keys, ylabel in zip(axes.flat, (losses, other), ("loss", "info [nats] / accuracy"),
                                strict=False):
        for k in keys:
            ax.plot(history["epoch"], history[k], "o-" if k.startswith("val_") else "s--", label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    return fig


def plot_style():
    """The matplotlib style of every nurdad figure: mplhep's CMS look with smaller fonts."""
    import mplhep
    from matplotlib import style

    return style.context([mplhep.style.CMS, _STYLE_OVERRIDES])


def fig_tradeoff(sweep: dict):
    """AUROC (anomaly vs background mix, x) against 1/JSD@10% of QCD (y; log beyond a decade): one
    labelled point per lambda (NURD-MD), the AE as a star, the DDT-decorrelated lambda = 0 classifier
    and AE as open markers. Top-right is better; points with an undefined AUROC or 1/JSD are left
    out with a warning."""
    fig, axes = _figure(8, 6.5)
    ax = axes[0, 0]
    points = [(p["lambda"], *xy) for p in sweep["points"] if (xy := _tradeoff_xy(p))]
    ax.plot([p[1] for p in points], [p[2] for p in points], "o-", color="tab:blue",
            label="NuRD-MD, one point per λ")
    for lam, x, y in points:
        ax.annotate(f"λ={lam:g}", (x, y), textcoords="offset points", xytext=(6, 6))
    ys = [p[2] for p in points]
    if sweep.get("ae") and (xy := _tradeoff_xy(sweep["ae"])):
        ax.plot(*xy, "*", color="tab:red", markersize=20, label="AE (MSE)")
        ys.append(xy[1])
    for point in sweep.get("ddt", []):
        if xy := _tradeoff_xy(point):
            ae = point["lambda"] is None
            ax.plot(*xy, "*" if ae else "s", color="tab:red" if ae else "tab:blue",
                    markersize=16 if ae else 11, markerfacecolor="none", markeredgewidth=2,
                    label="AE (MSE) + DDT" if ae else "λ = 0 classifier (MD) + DDT")
            ys.append(xy[1])
    if ys and min(ys) > 0 and max(ys) / min(ys) > 10:
        ax.set_yscale("log")
    ax.margins(0.12)
    ax.set_xlabel(f"AUROC ({sweep['anomaly']} vs QCD+W/Z)")
    ax.set_ylabel("1/JSD of the QCD mass, 10% kept")
    ax.legend(loc="best")
    return fig


def _tradeoff_xy(point: dict) -> tuple[float, float] | None:
    xy = as_float(point["auroc_vs_mix"]), as_float(point["inverse_jsd_10"])
    if all(math.isfinite(v) for v in xy):
        return xy
    log.warning("trade-off plot: %s has no finite AUROC and 1/JSD; left out", point["method"])
    return None


def plot_tradeoff(sweep: dict, path: str | os.PathLike) -> None:
    """Save `fig_tradeoff` of a sweep summary (`nurdad.sweep.sweep_summary`) as a PNG, atomically."""
    with plot_style():
        png = _png(fig_tradeoff(sweep))
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


# ------------------------------------------------------------------------------------------ html
def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return "∞" if value == "inf" else html.escape(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, title: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    text = f"<b>{html.escape(title)}</b>" + (f". {html.escape(caption)}" if caption else "")
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{text}</figcaption></figure>")


_REFERENCE_ROWS = {  # (model, score) -> row name of the lambda = 0 classifier and the AE in the talk table
    ("nurd", "nurd_md"): "λ = 0 classifier (MD)", ("nurd", "nurd_md_ddt"): "λ = 0 classifier (MD+DDT)",
    ("ae", "ae_mse"): "AE (MSE)", ("ae", "ae_mse_ddt"): "AE (MSE+DDT)",
}


def talk_rows(metrics: dict, anomaly: str) -> list[tuple[str, dict, dict]]:
    """(row name, run entry, score entry) of the talk's table: NuRD-MD and NuRD-ML for every
    lambda > 0 (by lambda), the lambda = 0 classifier (MD), the AE, and the DDT-decorrelated
    scores of the classifier and the AE (the post-hoc competitors of NuRD's decorrelation)."""
    rows = []
    for _, run in ordered_runs(metrics):
        if run["model"] == "nurd" and run["lambda"]:
            for score in ("nurd_md", "nurd_ml"):
                if score in run["scores"]:
                    rows.append((run["scores"][score]["method"], run, run["scores"][score]))
        for (model, score), name in _REFERENCE_ROWS.items():
            if run["model"] == model and not run["lambda"] and score in run["scores"]:
                rows.append((name, run, run["scores"][score]))
    return [r for r in rows if anomaly in r[2]["anomalies"]]


def talk_table(metrics: dict, anomaly: str) -> str:
    header = ("method", f"AUC {anomaly} vs QCD+W/Z", "AUC vs QCD", f"AUC vs QCD at the {anomaly} mass",
              "|corr(score, m)| QCD", "dCor(score, m) QCD", "1/JSD@10%", "1/JSD@1%", "AUC range over mix",
              "parameters", "MACs/jet")
    rows = []
    for name, run, entry in talk_rows(metrics, anomaly):
        res, qcd = entry["anomalies"][anomaly], entry.get("qcd_mass", {})
        mix = [as_float(r["auroc"]) for r in entry["robustness"]["mix"].get(anomaly, [])]
        spread = max(mix) - min(mix) if mix else None
        rows.append((html.escape(name), _fmt(res["vs_mix"]["auroc"]),
                     _fmt(res.get("vs_qcd", {}).get("auroc")),
                     _fmt(res.get("vs_qcd_in_mass_window", {}).get("auroc")),
                     _fmt(abs(as_float(qcd.get("pearson")))),
                     _fmt(qcd.get("distance_corr")), _fmt(qcd.get("inverse_jsd_10"), ".1f"),
                     _fmt(qcd.get("inverse_jsd_1"), ".1f"), _fmt(spread),
                     f"{run['parameters']['total']:,}", _fmt(run.get("macs_per_jet"), ",")))
    return _table(header, rows)


def _full_table(metrics: dict) -> str:
    rows = [(html.escape(m), html.escape(a), _fmt(auc), _fmt(r30, ".1f"), _fmt(c), _fmt(j, ".1f"),
             f"{p:,}") for m, a, auc, r30, c, j, p in table_rows(metrics)]
    return _table(TABLE_HEADER, rows)


def _mass_shift_table(metrics: dict, arrays: dict, methods: list[Method], anomaly: str) -> str:
    header = ("method", "QCD spectrum", "median QCD mass [GeV]", "effective QCD jets",
              f"AUC {anomaly} vs mix", "AUC vs QCD", "|corr(score, m)|", "1/JSD@10%")
    rows = []
    for m in methods:
        entry = metrics["runs"][m.run]["scores"][m.score]
        qcd_mass = arrays[m.run]["mass"][arrays[m.run]["process"] == "qcd"]
        studies = {"as trained": {**entry, "qcd_median_mass_gev": float(np.median(qcd_mass)) if len(
            qcd_mass) else None, "effective_jets": len(qcd_mass)},
                   **entry["robustness"]["mass_shift"]}
        for shift, res in studies.items():
            if anomaly not in res["anomalies"]:
                continue
            a, qcd = res["anomalies"][anomaly], res.get("qcd_mass", {})
            rows.append((html.escape(m.name), html.escape(shift), _fmt(res["qcd_median_mass_gev"], ".0f"),
                         _fmt(float(res["effective_jets"]), ".0f"), _fmt(a["vs_mix"]["auroc"]),
                         _fmt(a.get("vs_qcd", {}).get("auroc")), _fmt(abs(as_float(qcd.get("pearson")))),
                         _fmt(qcd.get("inverse_jsd_10"), ".1f")))
    return _table(header, rows)


def _provenance_block(metrics: dict, metrics_file: Path) -> str:
    now = provenance()
    runs = []
    for name, run in ordered_runs(metrics):
        run_dir = Path(run["run_dir"])
        config = (run_dir / "config.json").read_text() if (run_dir / "config.json").exists() else "{}"
        made = json.loads((run_dir / "provenance.json").read_text()) if (
            run_dir / "provenance.json").exists() else {}
        runs.append(f"<details><summary>{html.escape(name)}: {html.escape(run['label'])} — "
                    f"{html.escape(str(run_dir))}, trained at commit "
                    f"{html.escape(str(made.get('git_commit', 'unknown')))}</summary>"
                    f"<pre>{html.escape(config)}</pre></details>")
    data = metrics.get("data", {})
    versions = ", ".join(f"{k} {v}" for k, v in now["versions"].items())
    return (f"<p>Report made {html.escape(now['created_utc'])} on {html.escape(now['host'])}, "
            f"nurdad commit <code>{html.escape(now['git_commit'])}</code>.<br>"
            f"Versions: {html.escape(versions)}.<br>"
            f"Evaluation: {html.escape(str(metrics_file.resolve()))} "
            f"(made {html.escape(str(metrics.get('provenance', {}).get('created_utc', '?')))}).<br>"
            f"Data: {html.escape(', '.join(data.get('files', [])))}; jets per process "
            f"{html.escape(json.dumps(data.get('processes', {})))}.</p>" + "".join(runs))


# ---------------------------------------------------------------------------------------- report
def build_report(inputs: Sequence[str | os.PathLike], out: str | os.PathLike = "report.html",
                 metrics_path: str | os.PathLike | None = None, data=None, note: str | None = None,
                 title: str = "nurdad report") -> Path:
    """Write the HTML report of run / sweep directories to `out` (atomically); returns its path.

    `metrics_path`: show this evaluation instead of finding or making one (see `resolve_metrics`);
    `data`: evaluate on these files when an evaluation must be made; `note`: a highlighted remark
    at the top (the demo warns that its numbers are noisy).
    """
    out = Path(out)
    collected = collect_inputs(inputs) if inputs else ReportInputs([], [])
    if not collected.run_dirs and metrics_path is None:
        raise NurdadError("report: give run or sweep directories, or --metrics")
    metrics_file = resolve_metrics(collected, out, metrics_path, data)
    metrics = json.loads(metrics_file.read_text())
    arrays = load_scores(scores_path(metrics_file))
    with plot_style():
        body = _body(metrics, arrays, collected, metrics_file, note)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report written to %s", out)
    return out


def _anomalies(metrics: dict) -> list[str]:
    return list(dict.fromkeys(a for r in metrics["runs"].values() for a in r["anomalies"]))


def _body(metrics, arrays, collected: ReportInputs, metrics_file: Path, note) -> str:
    methods = plot_methods(metrics)
    anomalies = _anomalies(metrics)
    first_run = next(iter(metrics["runs"].values()))
    parts = []
    if note:
        parts.append(f'<div class="note">{html.escape(note)}</div>')
    labels = ", ".join(r["label"] for r in metrics["runs"].values())
    parts.append(f"<p class='muted'>Runs: {html.escape(labels)}. "
                 f"Evaluation jets: {html.escape(first_run['evaluation_jets'])}. Higher score = more "
                 "anomalous; the anomaly is the positive class.</p>")

    parts.append("<h2>Summary (the talk's table)</h2>")
    for anomaly in anomalies:
        parts.append(f"<h3>anomaly: {html.escape(anomaly)}</h3>{talk_table(metrics, anomaly)}")
    parts.append(f"<p class='muted'>{html.escape(TALK_REFERENCE)} Parameters include the detector's "
                 "(class means and precision factors). 'AUC range over mix': max - min of the AUROC as "
                 "the QCD share of the background runs from 0 to 1.</p>")

    parts.append("<h2>All metrics</h2>" + _full_table(metrics))

    parts.append("<h2>Robustness</h2>")
    for anomaly in anomalies:
        fig = fig_robustness_mix(metrics, methods, anomaly)
        if fig is not None:
            parts.append(_img(_png(fig), f"Robustness to the background mix ({anomaly})",
                              "AUROC against a QCD/W-Z mix as the QCD fraction varies; flat is robust."))
    shifts = "; ".join(f"{k}: {v}" for k, v in metrics.get("mass_shifts", {}).items())
    parts.append(f"<h3>QCD mass spectrum shifted</h3><p class='muted'>{html.escape(shifts)}</p>")
    parts.append(_mass_shift_table(metrics, arrays, methods, anomalies[0]))

    parts.append("<h2>ROC curves</h2>")
    for anomaly in anomalies:
        parts.append(_img(_png(fig_roc(metrics, arrays, methods, anomaly)),
                          f"ROC curves: {anomaly} vs QCD+W/Z",
                          "Background rejection against signal efficiency, log scale."))

    parts.append("<h2>Score distributions</h2>")
    parts.append(_img(_png(fig_score_distributions(arrays, methods)), "Score distributions per class",
                      "Normalized; one panel per method; every process of the evaluation."))

    parts.append("<h2>Mass sculpting</h2>")
    fig = fig_sculpting(metrics, arrays, methods)
    if fig is not None:
        parts.append(_img(_png(fig), "QCD mass after score cuts",
                          "QCD mass of the jets keeping the 10% and 1% highest scores, against all QCD. "
                          "Identical shapes (large 1/JSD) = no sculpting."))

    parts.append("<h2>Mean jet images</h2>")
    if arrays["images"]:
        parts.append(_img(_png(fig_mean_images(arrays["images"], metrics["data"].get("image_half_width"))),
                          "Mean jet image per process", "Preprocessed (centred, rotated, flipped) unit-sum "
                          "images; log colour scale."))

    parts.append("<h2>Nuisance weights</h2>")
    shared: dict[str, list[str]] = {}  # one figure per distinct weights.png (same data, seed, settings)
    for _, run in ordered_runs(metrics):
        png = Path(run["run_dir"]) / "weights.png"
        if png.exists():
            shared.setdefault(str(png), []).append(run["label"])
    shown: dict[str, tuple[bytes, list[str]]] = {}
    for png, labels in shared.items():
        data = Path(png).read_bytes()
        shown.setdefault(hashlib.sha256(data).hexdigest(), (data, []))[1].extend(labels)
    for data, labels in shown.values():
        parts.append(_img(data, f"Weight diagnostic ({', '.join(labels)})",
                          "Training-jet mass per class before and after the importance weights: "
                          "after weighting, every class should have one shape."))
    if not shown:
        parts.append("<p class='muted'>No NuRD run with a weights.png.</p>")

    parts.append("<h2>Training curves</h2>")
    for name, run in ordered_runs(metrics):
        history_csv = Path(run["run_dir"]) / "history.csv"
        history = _read_history(history_csv) if history_csv.exists() else {}
        if history:
            parts.append(_img(_png(fig_training(history, run["label"])),
                              f"Training curves ({name}: {run['label']})",
                              f"Best epoch {run.get('best_epoch')}; selection = validation loss."))

    if collected.sweep_dirs:
        parts.append("<h2>λ trade-off</h2>")
    for sweep_dir in collected.sweep_dirs:
        sweep = json.loads((sweep_dir / "sweep.json").read_text())
        parts.append(_img(_png(fig_tradeoff(sweep)), f"Trade-off ({sweep_dir.name}, {sweep['anomaly']})",
                          "AUROC against 1/JSD@10% of QCD, one point per λ (NuRD-MD); star: the AE."))

    parts.append("<h2>Provenance</h2>" + _provenance_block(metrics, metrics_file))
    return "\n".join(parts)
