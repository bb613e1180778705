"""Anomaly scores on a trained encoder's outputs: NURD-MD (Mahalanobis) and NURD-ML (max logit).

Both detectors follow the scikit-learn pattern: `__init__` stores options, `fit` learns attributes
ending in `_` and returns self, `score` returns an `(N,)` float64 array where higher means more
anomalous. Inputs are numpy arrays (convert tensors with `.numpy()` first); work is in float64.

Exports `MahalanobisDetector`, `GaussianStatistics` (additive sums for sharded/DDP fits),
`MaxLogitDetector` and the registry `DETECTORS`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

from nurdad.errors import ConfigError, NotFittedError, SchemaError

log = logging.getLogger(__name__)

_FORMAT = "nurdad.MahalanobisDetector/1"
_MIN_LEDOIT_WOLF_SHRINKAGE = 1e-6  # floor when the Ledoit-Wolf estimate leaves Sigma singular


def _softmin(d: np.ndarray) -> np.ndarray:
    """-2 log((1/K) sum_k exp(-d_k / 2)): the equal-weight Gaussian-mixture negative log density."""
    return -2.0 * (logsumexp(-0.5 * d, axis=1) - np.log(d.shape[1]))


# How the per-class distances (N, K) become one score (N,); higher = more anomalous.
COMBINE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "min": lambda d: d.min(axis=1),  # distance to the nearest background (reference NuRD code)
    "softmin": _softmin,  # smooth min; -2 log of a tied-covariance mixture density
    "mean": lambda d: d.mean(axis=1),  # average distance; penalizes being far from any class
}


def _as_labels(labels, n: int) -> np.ndarray:
    """`labels` as an (n,) integer array, or a one-line SchemaError."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise SchemaError(f"labels: expected shape ({n},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise SchemaError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    return labels


def _as_matrix(x, name: str, n_features: int | None = None) -> np.ndarray:
    """`x` as a finite float64 (N, D) array, or a one-line SchemaError naming `name`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise SchemaError(f"{name}: expected a 2-d array (N, D), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise SchemaError(f"{name}: expected {n_features} features per row, got {x.shape[1]}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise SchemaError(f"{name}: contains NaN or inf (first at row {bad})")
    return x


@dataclasses.dataclass(frozen=True)
class GaussianStatistics:
    """Per-class weighted sums from which `MahalanobisDetector` is fitted; additive over shards.

    With y = r - shift_k for a jet of class k and w its weight, the sums are
    `rows` = #jets, `weight` = sum w, `s1` = sum w y, `s2` = sum w y y^T, `s3` = sum w |y|^2 y and
    `s4` = sum w |y|^4. The third and fourth moments make the Ledoit-Wolf shrinkage exact from sums.
    Shards combine with `+` (same classes and shift); under DDP all-reduce `to_flat()` and rebuild with
    `from_flat`. The shift only guards float64 against cancellation when the means are far from 0
    (error ~ 1e-16 (|mean - shift| / spread)^4); pass the same shift on every rank.

    Attributes (K classes, D features): classes (K,) int, shift (K, D), rows (K,), weight (K,),
    s1 (K, D), s2 (K, D, D), s3 (K, D), s4 (K,).
    """

    classes: np.ndarray
    shift: np.ndarray
    rows: np.ndarray
    weight: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray
    s4: np.ndarray

    _SUMS = ("rows", "weight", "s1", "s2", "s3", "s4")

    @classmethod
    def from_data(cls, representations, labels, classes, sample_weight=None, shift=None):
        """Sums over one shard. `representations` (N, D); `labels` (N,) int drawn from `classes` (K,);
        `sample_weight` (N,) >= 0 or None (all 1); `shift` (K, D) or None (zeros)."""
        r = _as_matrix(representations, "representations")
        classes = np.asarray(classes)
        labels = _as_labels(labels, len(r))
        unknown = np.setdiff1d(labels, classes)
        if unknown.size:
            raise SchemaError(f"labels: value {unknown[0]} is not one of classes {classes.tolist()}")
        w = np.ones(len(r)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if w.shape != (len(r),) or not np.isfinite(w).all() or (w < 0).any():
            raise SchemaError(f"sample_weight: expected ({len(r)},) finite values >= 0")
        k, d = len(classes), r.shape[1]
        shift = np.zeros((k, d)) if shift is None else np.asarray(shift, np.float64)
        if shift.shape != (k, d):
            raise SchemaError(f"shift: expected shape ({k}, {d}), got {shift.shape}")
        sums = {name: [] for name in cls._SUMS}
        for i, c in enumerate(classes):
            mask = labels == c
            y, wc = r[mask] - shift[i], w[mask]  # (n_k, D), (n_k,)
            sq = np.einsum("nd,nd->n", y, y)  # |y|^2, (n_k,)
            sums["rows"].append(float(mask.sum()))
            sums["weight"].append(wc.sum())
            sums["s1"].append(wc @ y)
            sums["s2"].append((y * wc[:, None]).T @ y)
            sums["s3"].append((wc * sq) @ y)
            sums["s4"].append(wc @ sq**2)
        return cls(classes, shift, **{name: np.asarray(v) for name, v in sums.items()})

    def __add__(self, other: GaussianStatistics) -> GaussianStatistics:
        if not (np.array_equal(self.classes, other.classes)
                and np.array_equal(self.shift, other.shift)):
            raise SchemaError("GaussianStatistics: shards differ in classes or shift; cannot add")
        return dataclasses.replace(
            self, **{n: getattr(self, n) + getattr(other, n) for n in self._SUMS}
        )

    def to_flat(self) -> np.ndarray:
        """All sums as one float64 vector (for a single all-reduce)."""
        return np.concatenate([np.ravel(getattr(self, n)) for n in self._SUMS])

    @classmethod
    def from_flat(cls, flat, classes, shift) -> GaussianStatistics:
        """Inverse of `to_flat`, given the `classes` (K,) and `shift` (K, D) used on every shard."""
        classes, shift = np.asarray(classes), np.asarray(shift, np.float64)
        k, d = shift.shape
        shapes = {"rows": (k,), "weight": (k,), "s1": (k, d), "s2": (k, d, d), "s3": (k, d),
                  "s4": (k,)}
        flat = np.asarray(flat, np.float64)
        sizes = [int(np.prod(shapes[n])) for n in cls._SUMS]
        if flat.shape != (sum(sizes),):
            raise SchemaError(f"flat statistics: expected {sum(sizes)} values, got {flat.shape}")
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        sums = {n: p.reshape(shapes[n]) for n, p in zip(cls._SUMS, parts, strict=True)}
        return cls(classes, shift, **sums)


def _ledoit_wolf_shrinkage(cov: np.ndarray, fourth: float, n: float) -> float:
    """Ledoit-Wolf (2004) shrinkage of the (D, D) covariance `cov` towards mu*I, from sums only.

    `fourth` = sum_i |x_i|^4 over the n centred samples. Same formula as
    `sklearn.covariance.ledoit_wolf_shrinkage`, which needs the data only for this scalar.
    """
    d = cov.shape[0]
    mu = np.trace(cov) / d
    delta = np.sum((cov - mu * np.eye(d)) ** 2) / d
    beta = (fourth / n - np.sum(cov**2)) / (d * n)
    if delta <= 0.0:  # cov is already a multiple of the identity
        return 0.0
    return float(np.clip(min(beta, delta) / delta, 0.0, 1.0))


class MahalanobisDetector:
    """NURD-MD: Mahalanobis distance to each background class with one tied, shrunk covariance.

    Parameters
    ----------
    combine : {'min', 'softmin', 'mean'}, default 'min'
        How the K distances become one score (see `COMBINE`); 'min' is the reference choice.
    chunk_size : int, default 65536
        Rows scored at a time; memory is O(chunk_size * K * D), never O(N^2).
    shrinkage : float in [0, 1] or None, default None
        None: Ledoit-Wolf shrinkage (exact, also from sums). A float: fixed shrinkage
        Sigma = (1 - s) S + s tr(S)/D I, as `sklearn.covariance.ShrunkCovariance`.

    Attributes
    ----------
    classes_ : (K,) int labels; class_names_ : list of K names
    means_ : (K, D) class means mu_k
    covariance_, precision_ : (D, D) shrunk pooled within-class covariance and its inverse
    precision_cholesky_ : (D, D) lower-triangular L with precision_ = L L^T
    shrinkage_ : float; n_features_in_ : int D

    Notes
    -----
    d_k(r) = (r - mu_k) Sigma^-1 (r - mu_k)^T = |(r - mu_k) L|^2: one dense layer (weights L,
    bias -mu_k L) and a sum of squares per class, so the score runs on an FPGA. S is the maximum-
    likelihood covariance of the class-centred representations pooled over classes (Lee et al. 2018;
    the reference NuRD OOD code; Gandrakota et al., arXiv:2401.08777). Shrinkage keeps Sigma
    invertible for a rank-deficient representation (Ledoit & Wolf, J. Multivar. Anal. 88, 2004).
    Sample weights act as frequency weights rescaled to sum to the number N of jets, so the
    Ledoit-Wolf shrinkage (which falls like 1/N) sees N jets whatever the weights' normalization.
    """

    def __init__(self, combine: str = "min", chunk_size: int = 65536,
                 shrinkage: float | None = None):
        if combine not in COMBINE:
            raise ConfigError(f"combine: expected one of {sorted(COMBINE)}, got {combine!r}")
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
        if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
            raise ConfigError(f"shrinkage: expected None (Ledoit-Wolf) or in [0, 1], got {shrinkage}")
        self.combine = combine
        self.chunk_size = int(chunk_size)
        self.shrinkage = shrinkage

    def fit(self, representations, labels, sample_weight=None,
            class_names: Sequence[str] | Mapping[int, str] | None = None) -> MahalanobisDetector:
        """Learn class means and the tied covariance.

        `representations` (N, D); `labels` (N,) int; `sample_weight` (N,) or None;
        `class_names[label]` names a class in messages and `class_names_` (e.g. ('qcd', 'wz')).
        """
        r = _as_matrix(representations, "representations")
        labels = _as_labels(labels, len(r))
        classes = np.unique(labels)
        # per-class means as the shift make the sums centred, hence free of cancellation
        shift = np.stack([r[labels == c].mean(axis=0) for c in classes]) if len(r) else None
        stats = GaussianStatistics.from_data(r, labels, classes, sample_weight, shift)
        return self.fit_statistics(stats, class_names)

    def fit_statistics(self, stats: GaussianStatistics,
                       class_names: Sequence[str] | Mapping[int, str] | None = None
                       ) -> MahalanobisDetector:
        """Fit from (all-reduced) `GaussianStatistics`; equals `fit` on the concatenated shards."""
        names = [self._class_name(c, class_names) for c in stats.classes]
        if len(stats.classes) < 2:
            raise SchemaError(
                f"labels: need at least 2 background classes, got {len(stats.classes)} {names}"
            )
        for name, rows, weight in zip(names, stats.rows, stats.weight, strict=True):
            if rows < 2 or weight <= 0:
                raise SchemaError(
                    f"class {name!r}: needs at least 2 jets with positive weight, got {int(rows)}"
                )
        n = stats.rows.sum()
        scale = n / stats.weight.sum()  # weights -> frequency weights summing to n jets
        b = stats.s1 / stats.weight[:, None]  # (K, D) class mean minus shift
        bsq = np.einsum("kd,kd->k", b, b)
        scatter = stats.s2 - stats.weight[:, None, None] * np.einsum("kd,ke->kde", b, b)
        fourth = (stats.s4 + 4 * np.einsum("kd,kde,ke->k", b, stats.s2, b)
                  - 4 * np.einsum("kd,kd->k", b, stats.s3)
                  + 2 * bsq * np.einsum("kdd->k", stats.s2) - 3 * stats.weight * bsq**2)
        cov = scale * scatter.sum(axis=0) / n
        cov = (cov + cov.T) / 2
        if self.shrinkage is None:
            shrinkage = _ledoit_wolf_shrinkage(cov, scale * fourth.sum(), n)
        else:
            shrinkage = float(self.shrinkage)
        d = cov.shape[0]
        mu = np.trace(cov) / d
        if mu <= 0:
            raise SchemaError("representations: zero variance within every class; cannot fit")
        covariance = (1.0 - shrinkage) * cov + shrinkage * mu * np.eye(d)
        eigvals = np.linalg.eigvalsh(covariance)
        if eigvals[0] <= 1e-12 * eigvals[-1] and self.shrinkage is None:
            # Ledoit-Wolf estimates 0 for some rank-deficient data (e.g. two-valued representations)
            shrinkage = max(shrinkage, _MIN_LEDOIT_WOLF_SHRINKAGE)
            covariance = (1.0 - shrinkage) * cov + shrinkage * mu * np.eye(d)
            eigvals = np.linalg.eigvalsh(covariance)
        if eigvals[0] <= 1e-12 * eigvals[-1]:
            raise SchemaError(
                f"representations: covariance is singular with shrinkage={shrinkage}; "
                "use shrinkage=None (Ledoit-Wolf) or a value > 0"
            )
        precision = np.linalg.inv(covariance)
        precision = (precision + precision.T) / 2
        self.classes_ = np.asarray(stats.classes)
        self.class_names_ = names
        self.means_ = stats.shift + b
        self.covariance_ = covariance
        self.precision_ = precision
        self.precision_cholesky_ = np.linalg.cholesky(precision)
        self.shrinkage_ = shrinkage
        self.n_features_in_ = d
        log.info("Mahalanobis fit: %d classes %s, D=%d, shrinkage=%.4g", len(names), names, d,
                 shrinkage)
        return self

    @staticmethod
    def _class_name(label, class_names) -> str:
        if class_names is None:
            return str(label)
        try:
            return str(class_names[int(label)])
        except (IndexError, KeyError):
            raise ConfigError(f"class_names: no name for label {label}") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "precision_cholesky_"):
            raise NotFittedError("MahalanobisDetector: call fit(...) or from_dict(...) first")

    def distances(self, representations) -> np.ndarray:
        """Squared Mahalanobis distances (N, K) to each class mean, in `classes_` order."""
        self._check_fitted()
        r = _as_matrix(representations, "representations", self.n_features_in_)
        lmat = self.precision_cholesky_
        centres = self.means_ @ lmat  # (K, D)
        out = np.empty((len(r), len(self.classes_)))
        for start in range(0, len(r), self.chunk_size):
            z = r[start:start + self.chunk_size] @ lmat  # (c, D)
            diff = z[:, None, :] - centres[None, :, :]  # (c, K, D) = (r - mu_k) L
            out[start:start + self.chunk_size] = np.einsum("ckd,ckd->ck", diff, diff)
        return out

    def score(self, representations) -> np.ndarray:
        """Anomaly score (N,), the `combine` of `distances`; higher = more anomalous."""
        return COMBINE[self.combine](self.distances(representations))

    def to_dict(self) -> dict:
        """JSON-serializable options and learned state (plain lists; floats round-trip exactly)."""
        self._check_fitted()
        return {
            "format": _FORMAT,
            "combine": self.combine,
            "chunk_size": self.chunk_size,
            "shrinkage": self.shrinkage,
            "classes": self.classes_.tolist(),
            "class_names": list(self.class_names_),
            "means": self.means_.tolist(),
            "covariance": self.covariance_.tolist(),
            "precision": self.precision_.tolist(),
            "precision_cholesky": self.precision_cholesky_.tolist(),
            "shrinkage_value": self.shrinkage_,
        }

    @classmethod
    def from_dict(cls, state: dict) -> MahalanobisDetector:
        """Rebuild a fitted detector from `to_dict()` output."""
        if state.get("format") != _FORMAT:
            raise SchemaError(f"detector state: expected format {_FORMAT!r}, "
                              f"got {state.get('format')!r}")
        try:
            det = cls(state["combine"], state["chunk_size"], state["shrinkage"])
            det.classes_ = np.asarray(state["classes"])
            det.class_names_ = list(state["class_names"])
            det.means_ = np.asarray(state["means"], np.float64)
            det.covariance_ = np.asarray(state["covariance"], np.float64)
            det.precision_ = np.asarray(state["precision"], np.float64)
            det.precision_cholesky_ = np.asarray(state["precision_cholesky"], np.float64)
            det.shrinkage_ = float(state["shrinkage_value"])
        except KeyError as exc:
            raise SchemaError(f"detector state: missing key {exc.args[0]!r}") from None
        det.n_features_in_ = det.means_.shape[1]
        return det


class MaxLogitDetector:
    """NURD-ML: score = -max_k logit_k (higher = more anomalous; Hendrycks et al. 2022).

    No learned state: `fit` only records the number of classes, so `score` can check it, and
    scoring without `fit` is allowed.
    """

    def fit(self, logits, labels=None) -> MaxLogitDetector:
        """`logits` (N, K); `labels` ignored (API symmetry with `MahalanobisDetector`)."""
        self.n_features_in_ = _as_matrix(logits, "logits").shape[1]
        return self

    def score(self, logits) -> np.ndarray:
        """Anomaly score (N,) from `logits` (N, K)."""
        logits = _as_matrix(logits, "logits", getattr(self, "n_features_in_", None))
        return -logits.max(axis=1)


# Detectors by name (for configs and the CLI); adding one is one entry.
DETECTORS: dict[str, type] = {"mahalanobis": MahalanobisDetector, "maxlogit": MaxLogitDetector}
