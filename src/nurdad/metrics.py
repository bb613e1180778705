"""Figures of merit for jet anomaly scores: separation, mass sculpting, robustness to the background mix.

Conventions (higher score = more anomalous; signal = the anomaly, positive class):
AUROC and background rejection 1/eps_B at fixed signal efficiency eps_S; mass sculpting on QCD as
1/JSD between the mass histogram of the jets passing a score cut and of all jets (base 2, DisCo:
Kasieczka & Shih, PRL 125 (2020) 122001), plus Pearson and distance correlation of score and mass.
Masses are in GeV. Results are plain Python floats so they go straight to JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score, roc_curve

from nurdad.errors import NurdadError, SchemaError

log = logging.getLogger(__name__)

DEFAULT_MASS_BINS_GEV = np.linspace(0.0, 300.0, 31)  # 10 GeV bins over the jet-mass range
BACKGROUNDS = ("qcd", "wz")
QCD_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # background mixes of the robustness study


def _as_vector(x, name: str, min_size: int = 1) -> np.ndarray:
    """`x` as a finite float64 (N,) array with N >= min_size, or a one-line NurdadError."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise SchemaError(f"{name}: expected a 1-d array, got shape {x.shape}")
    if len(x) < min_size:
        raise NurdadError(f"{name}: needs at least {min_size} jets, got {len(x)}")
    if not np.isfinite(x).all():
        raise SchemaError(f"{name}: contains NaN or inf")
    return x


def _paired(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector(a, name_a, 2), _as_vector(b, name_b, 2)
    if a.shape != b.shape:
        raise SchemaError(f"{name_a} and {name_b}: lengths differ ({len(a)} vs {len(b)})")
    return a, b


def _labelled(scores_background, scores_signal) -> tuple[np.ndarray, np.ndarray]:
    bkg = _as_vector(scores_background, "scores_background")
    sig = _as_vector(scores_signal, "scores_signal")
    return np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg, sig]


def auroc(scores_background, scores_signal) -> float:
    """Area under the ROC curve, signal positive: 1 perfect, 0.5 random, 0 inverted."""
    return float(roc_auc_score(*_labelled(scores_background, scores_signal)))


def roc_curve_points(scores_background, scores_signal) -> tuple[np.ndarray, np.ndarray]:
    """ROC as (eps_B, eps_S): efficiencies of the cuts `score >= t` over all thresholds t."""
    eps_b, eps_s, _ = roc_curve(*_labelled(scores_background, scores_signal),
                                drop_intermediate=False)
    return eps_b, eps_s


def background_rejection(scores_background, scores_signal, signal_efficiency: float) -> float:
    """Background rejection 1/eps_B at signal efficiency `signal_efficiency` (in (0, 1]).

    eps_B is the lowest background efficiency reaching each eps_S on the ROC, linearly interpolated
    between ROC points. With N_B background jets a rejection beyond N_B cannot be measured, so eps_B is
    floored at 1/N_B: the result is finite and at most N_B (exactly N_B when no background passes).
    """
    if not 0.0 < signal_efficiency <= 1.0:
        raise NurdadError(f"signal_efficiency: expected a value in (0, 1], got {signal_efficiency}")
    eps_b, eps_s = roc_curve_points(scores_background, scores_signal)
    eps_s_unique, first = np.unique(eps_s, return_index=True)  # first = lowest eps_B (sorted ROC)
    eb = float(np.interp(signal_efficiency, eps_s_unique, eps_b[first]))
    n_b = len(scores_background)
    return 1.0 / max(eb, 1.0 / n_b)


def jensen_shannon_divergence(p_counts, q_counts) -> float:
    """JSD in bits (0 identical, 1 disjoint) of two histograms given as counts (normalized here).

    Equals `scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`, the divergence of DisCo.
    """
    p = np.asarray(p_counts, np.float64)
    q = np.asarray(q_counts, np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise SchemaError(f"histograms: expected two 1-d arrays of equal length, got {p.shape} "
                          f"and {q.shape}")
    for name, h in (("p_counts", p), ("q_counts", q)):
        if not np.isfinite(h).all() or (h < 0).any() or h.sum() <= 0:
            raise NurdadError(f"{name}: expected finite non-negative counts with a positive total")
    return float(jensenshannon(p, q, base=2) ** 2)


def mass_sculpting(score_qcd, mass_qcd, keep_fraction: float,
                   bins=DEFAULT_MASS_BINS_GEV) -> dict[str, float]:
    """How much a cut keeping the most anomalous `keep_fraction` of QCD jets reshapes their mass.

    The threshold t is the score of the ceil(keep_fraction * N)-th highest-scoring jet and the cut is
    `score >= t` (ties at t pass). `bins`: edges in GeV, or a number of bins over the range of all
    masses. Returns {'threshold', 'n_passing', 'jsd', 'inverse_jsd'} with
    jsd = JSD(hist of passing masses, hist of all masses); inverse_jsd is inf when jsd is 0.
    """
    score, mass = _paired(score_qcd, mass_qcd, "score_qcd", "mass_qcd")
    if not 0.0 < keep_fraction <= 1.0:
        raise NurdadError(f"keep_fraction: expected a value in (0, 1], got {keep_fraction}")
    n_keep = max(1, math.ceil(keep_fraction * len(score)))
    threshold = float(np.sort(score)[::-1][n_keep - 1])
    passing = score >= threshold
    edges = np.histogram_bin_edges(mass, bins)
    h_pass, _ = np.histogram(mass[passing], edges)
    h_all, _ = np.histogram(mass, edges)
    if h_pass.sum() == 0:
        raise NurdadError(f"mass_sculpting: no passing jet has a mass inside the bins "
                          f"[{edges[0]}, {edges[-1]}] GeV")
    jsd = jensen_shannon_divergence(h_pass, h_all)
    return {"threshold": threshold, "n_passing": int(passing.sum()), "jsd": jsd,
            "inverse_jsd": 1.0 / jsd if jsd > 0 else math.inf}


def pearson_correlation(a, b) -> float:
    """Pearson correlation of two (N,) arrays; nan (with a warning) if either is constant."""
    a, b = _paired(a, b, "a", "b")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        log.warning("pearson_correlation: constant input, correlation undefined (nan)")
        return math.nan
    return float(pearsonr(a, b).statistic)


def _distance_moments(x: np.ndarray, y: np.ndarray, chunk: int = 1024):
    """For a_ij = |x_i - x_j|, b_ij = |y_i - y_j|: row means of a and b (N,) and the sums over ij of
    a*a, b*b and a*b, accumulated over row blocks in O(N * chunk) memory."""
    n = len(x)
    row_a, row_b, sums = np.empty(n), np.empty(n), np.zeros(3)
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        a = np.abs(x[rows, None] - x[None, :])  # (c, N)
        b = np.abs(y[rows, None] - y[None, :])  # (c, N)
        row_a[rows], row_b[rows] = a.mean(axis=1), b.mean(axis=1)
        sums += [np.einsum("cn,cn->", a, a), np.einsum("cn,cn->", b, b),
                 np.einsum("cn,cn->", a, b)]
    return row_a, row_b, sums


def _distance_covariance_sq(row_a, row_b, cross: float) -> float:
    """V-statistic dCov^2 = mean_ij A_ij B_ij of the double-centred distance matrices A, B; with
    double centring it reduces to sum_ij a_ij b_ij / N^2 - 2 <row_a, row_b> / N + mean(a) mean(b)."""
    n = len(row_a)
    return max(cross / n**2 - 2.0 * np.dot(row_a, row_b) / n + row_a.mean() * row_b.mean(), 0.0)


def distance_correlation(a, b, max_samples: int | None = 5000, seed: int = 0) -> float:
    """Szekely's distance correlation R in [0, 1] (0 iff independent, 1 for a linear relation).

    Exact O(N^2)-time, O(N)-memory evaluation of the V-statistic (Szekely, Rizzo & Bakirov 2007) on
    at most `max_samples` jets, drawn without replacement with `seed` when N is larger (None: all;
    5000 jets take ~1 s). DisCo's penalty is R^2.
    """
    a, b = _paired(a, b, "a", "b")
    if max_samples is not None and len(a) > max_samples:
        pick = np.random.default_rng(seed).choice(len(a), max_samples, replace=False)
        a, b = a[pick], b[pick]
    row_a, row_b, (aa, bb, ab) = _distance_moments(a, b)
    dcov = _distance_covariance_sq(row_a, row_b, ab)
    dvar = _distance_covariance_sq(row_a, row_a, aa) * _distance_covariance_sq(row_b, row_b, bb)
    if dvar <= 0:
        log.warning("distance_correlation: constant input, correlation undefined (nan)")
        return math.nan
    return float(math.sqrt(dcov / math.sqrt(dvar)))


def reweight_to_mass_spectrum(mass, target_mass, bins=DEFAULT_MASS_BINS_GEV) -> np.ndarray:
    """Per-jet weights (N,) that give `mass` the binned spectrum of `target_mass` (both GeV).

    w = p_target(bin) / p_source(bin), then scaled to mean 1. Jets outside the bins and bins the
    target leaves empty get weight 0; target mass in bins with no source jet cannot be matched and is
    logged as a warning.
    """
    mass = _as_vector(mass, "mass")
    target = _as_vector(target_mass, "target_mass")
    edges = np.histogram_bin_edges(target, bins)
    h_src, _ = np.histogram(mass, edges)
    h_tgt, _ = np.histogram(target, edges)
    if h_src.sum() == 0 or h_tgt.sum() == 0:
        raise NurdadError(f"reweight_to_mass_spectrum: no mass inside [{edges[0]}, {edges[-1]}] GeV")
    ratio = np.divide(h_tgt / h_tgt.sum(), h_src / h_src.sum(), out=np.zeros(len(h_src)),
                      where=h_src > 0)
    unmatched = h_tgt[h_src == 0].sum() / h_tgt.sum()
    if unmatched > 0:
        log.warning("reweight_to_mass_spectrum: %.1f%% of the target lies in bins with no source jet",
                    100 * unmatched)
    idx = np.digitize(mass, edges) - 1
    idx[mass == edges[-1]] = len(h_src) - 1  # np.histogram's last bin is closed
    inside = (idx >= 0) & (idx < len(h_src))
    weights = np.where(inside, ratio[np.clip(idx, 0, len(h_src) - 1)], 0.0)
    return weights * len(weights) / weights.sum()


def mixture_scores(bkg_scores_by_class: Mapping[str, np.ndarray], fractions: Mapping[str, float],
                   seed: int = 0) -> np.ndarray:
    """Scores of a background mix with the given class `fractions` (summing to 1), drawn without
    replacement: the largest sample n with round(f_k n) <= N_k for every class k."""
    unknown = sorted(set(fractions) - set(bkg_scores_by_class))
    if unknown:
        raise NurdadError(f"fractions: no background scores for {unknown[0]!r}")
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise NurdadError(f"fractions: expected non-negative values summing to 1, got {fractions}")
    scores = {k: _as_vector(bkg_scores_by_class[k], k) for k, f in fractions.items() if f > 0}
    n = min(len(scores[k]) / fractions[k] for k in scores)
    rng = np.random.default_rng(seed)
    parts = [rng.choice(scores[k], min(round(fractions[k] * n), len(scores[k])), replace=False)
             for k in sorted(scores)]
    return np.concatenate(parts)


def _separation(bkg: np.ndarray, sig: np.ndarray, efficiencies: Sequence[float]) -> dict:
    out = {"auroc": auroc(bkg, sig)}
    for eff in efficiencies:
        out[f"rejection_{round(100 * eff)}"] = background_rejection(bkg, sig, eff)
    return out


MASS_WINDOW_QUANTILES = (0.16, 0.84)  # the anomaly's central 68% mass interval


def auroc_in_mass_window(bkg_scores, bkg_mass, sig_scores, sig_mass,
                         quantiles: Sequence[float] = MASS_WINDOW_QUANTILES) -> dict:
    """AUROC of signal vs background jets inside the signal's central mass interval (GeV).

    What a bump hunt at the anomaly's mass sees: separation that does not come from the mass itself.
    Returns {'auroc', 'window_gev': [lo, hi], 'n_background', 'n_signal'}; the AUROC is nan when
    fewer than 2 jets of either kind are inside.
    """
    bkg, bkg_m = _paired(bkg_scores, bkg_mass, "background scores", "background mass")
    sig, sig_m = _paired(sig_scores, sig_mass, "signal scores", "signal mass")
    lo, hi = (float(v) for v in np.quantile(sig_m, quantiles))
    b, t = bkg[(bkg_m >= lo) & (bkg_m <= hi)], sig[(sig_m >= lo) & (sig_m <= hi)]
    value = auroc(b, t) if min(len(b), len(t)) >= 2 else math.nan
    return {"auroc": value, "window_gev": [lo, hi], "n_background": len(b), "n_signal": len(t)}


def summarize_detector(scores_by_process: Mapping[str, np.ndarray],
                       mass_by_process: Mapping[str, np.ndarray] | None = None,
                       background: Sequence[str] = BACKGROUNDS, mass_bins=DEFAULT_MASS_BINS_GEV,
                       efficiencies: Sequence[float] = (0.3, 0.5),
                       keep_fractions: Sequence[float] = (0.1, 0.01), seed: int = 0) -> dict:
    """All headline numbers of one detector as a JSON-friendly nested dict.

    For each anomaly process (a key not in `background`): AUROC and 1/eps_B at each efficiency
    against each background present and against all background jets pooled ('vs_mix'). On QCD
    (when 'qcd' and its mass are given): Pearson and distance correlation of score and mass (GeV) and
    1/JSD at each kept fraction; and per anomaly 'vs_qcd_in_mass_window' (`auroc_in_mass_window`,
    when the masses are given). Keys: 'rejection_30' for eff 0.3, 'inverse_jsd_10' for keep 0.1.

    Returns {'n_jets': {process: int}, 'anomalies': {process: {'vs_qcd': {...}, 'vs_wz': {...},
    'vs_mix': {...}}}, 'qcd_mass': {...}}. Processes missing from `scores_by_process` are skipped;
    a process with fewer than 2 jets raises NurdadError naming it.
    """
    scores = {p: _as_vector(s, f"scores of {p!r}", 2) for p, s in scores_by_process.items()}
    bkg = [p for p in background if p in scores]
    if not bkg:
        raise NurdadError(f"summarize_detector: none of the backgrounds {list(background)} is "
                          f"among the processes {sorted(scores)}")
    mix = np.concatenate([scores[p] for p in bkg])
    summary = {"n_jets": {p: len(s) for p, s in scores.items()}, "anomalies": {}}
    for proc in sorted(set(scores) - set(background)):
        res = {f"vs_{b}": _separation(scores[b], scores[proc], efficiencies) for b in bkg}
        res["vs_mix"] = _separation(mix, scores[proc], efficiencies)
        if mass_by_process is not None and "qcd" in scores and {"qcd", proc} <= set(mass_by_process):
            res["vs_qcd_in_mass_window"] = auroc_in_mass_window(
                scores["qcd"], mass_by_process["qcd"], scores[proc], mass_by_process[proc])
        summary["anomalies"][proc] = res
    if "qcd" in scores and mass_by_process is not None:
        if "qcd" not in mass_by_process:
            raise SchemaError("mass_by_process: no 'qcd' masses for the QCD scores")
        score, mass = _paired(scores["qcd"], mass_by_process["qcd"], "scores of 'qcd'",
                              "mass of 'qcd'")
        qcd = {"pearson": pearson_correlation(score, mass),
               "distance_corr": distance_correlation(score, mass, seed=seed)}
        for keep in keep_fractions:
            sculpt = mass_sculpting(score, mass, keep, mass_bins)
            qcd[f"inverse_jsd_{100 * keep:g}"] = sculpt["inverse_jsd"]
        summary["qcd_mass"] = qcd
    return summary


def robustness_vs_mix(scores_by_process: Mapping[str, np.ndarray], anomaly: str,
                      fractions: Sequence[float] = QCD_FRACTIONS, background: Sequence[str] = BACKGROUNDS,
                      efficiencies: Sequence[float] = (0.3, 0.5), seed: int = 0) -> list[dict]:
    """Separation of `anomaly` from a two-class background mix as the share of `background[0]`
    (QCD) runs over `fractions`; one dict per fraction with 'qcd_fraction', 'n_background',
    'auroc' and 'rejection_<eff%>'. The mix is drawn by `mixture_scores` with `seed`."""
    if len(background) != 2:
        raise NurdadError(f"background: expected two classes, got {list(background)}")
    missing = [p for p in (anomaly, *background) if p not in scores_by_process]
    if missing:
        raise NurdadError(f"robustness_vs_mix: no scores for process {missing[0]!r}")
    first, second = background
    sig = _as_vector(scores_by_process[anomaly], f"scores of {anomaly!r}", 2)
    rows = []
    for frac in fractions:
        mix = mixture_scores(scores_by_process, {first: float(frac), second: 1.0 - float(frac)},
                             seed)
        rows.append({f"{first}_fraction": float(frac), "n_background": len(mix),
                     **_separation(mix, sig, efficiencies)})
    return rows
