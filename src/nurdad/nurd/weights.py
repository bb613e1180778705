"""NuRD step I, nuisance randomization: weights w = p(y) / p(y | z) that make y independent of z.

Under the weighted ("nuisance-randomized") distribution p_w(y, z) = p(y) p(z): the nuisance z (jet
mass) keeps its overall spectrum, but every background class now has that same spectrum, so a
classifier trained with these weights gains nothing from z itself (Puli et al., ICLR 2022).

p(y | z) is estimated either exactly, from counts in quantile bins of z, or with a classifier
fitted with K-fold cross-fitting (each jet's p(y | z) comes from a model that never saw it). As in
the reference code, p(y | z) is clipped from below and w from above to bound the variance.

Normalization: the weights are rescaled per class so that each class's total weight is N * p(y),
i.e. the weighted class fractions equal the empirical priors and the mean weight is 1 (over all jets
and within each class). Mean 1 lets a weighted loss `mean(w * loss)` keep the scale of an
unweighted one, and the reference code's "sum to 1" is the same weights divided by N.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from nurdad.errors import ConfigError, NurdadError
from nurdad.io import atomic_path

log = logging.getLogger(__name__)

WEIGHT_METHODS = ("exact", "classifier")
SPLINE_KNOTS = 12  # classifier: quantile knots of the cubic splines per nuisance column


@dataclass(frozen=True)
class WeightConfig:
    method: str = "exact"  # 'exact' (counts in quantile bins of z per class) | 'classifier'
    n_bins: int = 40  # exact: quantile bins per nuisance column (joint cells for several columns)
    n_folds: int = 5  # classifier: cross-fitting folds (out-of-fold p(y | z))
    min_prob: float = 0.05  # clip p(y | z) from below (reference code)
    max_weight: float = 20.0  # clip 1 / p(y | z) from above (reference code), before normalization

    def __post_init__(self):
        if self.method not in WEIGHT_METHODS:
            raise ConfigError(f"weights.method: expected one of {WEIGHT_METHODS}, got {self.method!r}")
        if not isinstance(self.n_bins, int) or self.n_bins < 1:
            raise ConfigError(f"weights.n_bins: expected an integer >= 1, got {self.n_bins!r}")
        if not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ConfigError(f"weights.n_folds: expected an integer >= 2, got {self.n_folds!r}")
        if not 0 < self.min_prob <= 1:
            raise ConfigError(f"weights.min_prob: expected a value in (0, 1], got {self.min_prob!r}")
        if not self.max_weight > 0:
            raise ConfigError(f"weights.max_weight: expected a value > 0, got {self.max_weight!r}")


def nuisance_weights(
    labels: np.ndarray,
    nuisance: np.ndarray,
    config: WeightConfig,
    seed: int = 0,
    n_classes: int | None = None,
) -> np.ndarray:
    """Per-jet weights w ~ p(y) / p(y | z), normalized to mean 1 with class totals N * p(y).

    Parameters
    ----------
    labels : (N,) int array
        Background class of each jet, in [0, K).
    nuisance : (N,) or (N, Z) float array
        The nuisance z (e.g. jet mass in GeV); 'exact' is invariant under monotone rescaling.
    config : WeightConfig
    seed : int
        Seed of the fold split and the classifier (method 'classifier').
    n_classes : int, optional
        K; by default labels.max() + 1. Every class must have jets.

    Returns
    -------
    (N,) float64 array of weights.
    """
    labels, nuisance, n_classes = _validated(labels, nuisance, n_classes)
    if config.method == "exact":
        prob = _exact_conditional(labels, nuisance, n_classes, config.n_bins)
    else:
        prob = _classifier_conditional(labels, nuisance, n_classes, config.n_folds, seed)
    # 1 / p(y | z) clipped as in the reference code; the prior p(y) only rescales each class, which
    # the per-class normalization below fixes anyway.
    weights = np.minimum(1.0 / np.maximum(prob, config.min_prob), config.max_weight)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    class_totals = np.bincount(labels, weights=weights, minlength=n_classes)
    weights *= (counts / class_totals)[labels]  # class total = N * p(y)  ->  mean weight 1
    n_eff = weights.sum() ** 2 / np.square(weights).sum()
    log.info("nuisance weights (%s): max %.3g, effective sample size %.0f of %d",
             config.method, weights.max(), n_eff, len(weights))
    return weights


def _validated(labels, nuisance, n_classes):
    labels = np.asarray(labels)
    nuisance = np.asarray(nuisance, dtype=np.float64)
    if labels.ndim != 1 or len(labels) == 0:
        raise NurdadError(f"labels: expected a non-empty 1-d array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise NurdadError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    if nuisance.ndim == 1:
        nuisance = nuisance[:, None]
    if nuisance.ndim != 2 or len(nuisance) != len(labels):
        raise NurdadError(
            f"nuisance: expected shape ({len(labels)},) or ({len(labels)}, Z), got {nuisance.shape}"
        )
    if not np.isfinite(nuisance).all():
        raise NurdadError("nuisance: contains NaN or inf values")
    if labels.min() < 0:
        raise NurdadError(f"labels: expected values >= 0, got {labels.min()}")
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    if labels.max() >= n_classes:
        raise NurdadError(f"labels: value {labels.max()} outside [0, {n_classes})")
    if n_classes < 2:
        raise NurdadError("labels: only one class present; NuRD needs >= 2 background classes")
    counts = np.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        raise NurdadError(f"labels: class {int(np.argmin(counts))} has no jets")
    return labels.astype(np.int64), nuisance, n_classes


def _exact_conditional(labels, nuisance, n_classes, n_bins) -> np.ndarray:
    """p(y_i | z_i) from class counts in the cell (product of per-column quantile bins) of z_i."""
    cell = np.zeros(len(labels), dtype=np.int64)
    for column in nuisance.T:
        edges = np.unique(np.quantile(column, np.linspace(0, 1, n_bins + 1))[1:-1])
        cell = cell * (len(edges) + 1) + np.searchsorted(edges, column, side="right")
    _, cell = np.unique(cell, return_inverse=True)
    counts = np.zeros((cell.max() + 1, n_classes))
    np.add.at(counts, (cell, labels), 1.0)
    return counts[cell, labels] / counts[cell].sum(axis=1)


def _classifier_conditional(labels, nuisance, n_classes, n_folds, seed) -> np.ndarray:
    """Out-of-fold p(y_i | z_i): multinomial logistic regression on cubic B-splines of each column.

    Smooth in z; with several columns the log-odds are additive in the columns. The fits run on
    one BLAS thread: these small problems ran ~15x slower multi-threaded on a busy 2-core machine.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer
    from threadpoolctl import threadpool_limits

    if np.bincount(labels).min() < n_folds:
        raise NurdadError(
            f"labels: every class needs at least weights.n_folds = {n_folds} jets for cross-fitting"
        )
    prob = np.empty(len(labels))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, held_out in folds.split(nuisance, labels):
        model = make_pipeline(
            SplineTransformer(n_knots=SPLINE_KNOTS, degree=3, knots="quantile",
                              extrapolation="linear"),
            LogisticRegression(C=10.0, max_iter=2000),
        )
        with threadpool_limits(1):
            model.fit(nuisance[train], labels[train])
            proba = np.zeros((len(held_out), n_classes))
            proba[:, model.classes_] = model.predict_proba(nuisance[held_out])
        prob[held_out] = proba[np.arange(len(held_out)), labels[held_out]]
    return prob


def weighted_histograms(values, labels, weights, bins) -> np.ndarray:
    """Per-class weighted densities of `values` on common bins, (K, n_bins); each row integrates to 1.

    `bins` is an int (equal-width bins over the range of `values`) or an array of edges.
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    edges = np.histogram_bin_edges(values, bins)
    return np.stack([
        np.histogram(values[labels == k], edges, weights=weights[labels == k], density=True)[0]
        for k in range(int(labels.max()) + 1)
    ])


def total_variation(histograms: np.ndarray, edges: np.ndarray) -> float:
    """Largest pairwise total-variation distance between the rows of `weighted_histograms`."""
    mass = histograms * np.diff(edges)  # (K, n_bins) probabilities
    k = len(mass)
    return max(
        (0.5 * np.abs(mass[a] - mass[b]).sum() for a in range(k) for b in range(a + 1, k)),
        default=0.0,
    )


def plot_weight_diagnostic(
    nuisance, labels, weights, class_names, path: str | os.PathLike,
    nuisance_name: str = "jet mass [GeV]", bins: int = 40,
) -> None:
    """Save a PNG with the nuisance distribution per class before (left) and after (right) weighting.

    After weighting all classes should share one shape; the panel titles give the largest pairwise
    total-variation distance between the class histograms.
    """
    from matplotlib.figure import Figure

    nuisance = np.asarray(nuisance, dtype=np.float64)
    if len(class_names) != int(np.max(labels)) + 1:
        raise NurdadError(f"class_names: expected {int(np.max(labels)) + 1} names, got {class_names}")
    edges = np.histogram_bin_edges(nuisance, bins, range=tuple(np.quantile(nuisance, [0.0, 0.995])))
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, w, title in zip(axes, (None, weights), ("before weighting", "after weighting"),
                            strict=True):
        hists = weighted_histograms(nuisance, labels, w, edges)
        for hist, name in zip(hists, class_names, strict=True):
            ax.stairs(hist, edges, label=name, linewidth=1.5)
        ax.set_title(f"{title} (max TV distance {total_variation(hists, edges):.3f})")
        ax.set_xlabel(nuisance_name)
    axes[0].set_ylabel("density")
    axes[0].legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
