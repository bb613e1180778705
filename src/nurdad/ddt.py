"""Mass decorrelation after the fact: a score replaced by its QCD quantile at the jet's mass (DDT).

The designed decorrelated tagger (Dolen, Harris, Marzani, Rappoccio, Tran, JHEP 05 (2016) 156) and
its varying-threshold variants make a cut on any score keep the same fraction of QCD at every mass.
Here the score s of a jet of mass m becomes F(s | m), the fraction of training QCD jets in m's mass
bin with a lower score: uniform on QCD at every mass, so it cannot sculpt the QCD mass spectrum
(up to the binning and the statistics of the fit). It is the obvious competitor of NuRD's learned
decorrelation, so `nurdad evaluate` reports it next to every model's main score.
"""

from __future__ import annotations

import numpy as np

from nurdad.errors import ConfigError, NotFittedError, SchemaError

N_LEVELS = 201  # stored quantiles per mass bin: the transform's resolution is 0.5% of QCD


class MassDecorrelation:
    """Fit on QCD (score, mass) pairs; `transform` maps a score to its QCD quantile at that mass.

    Parameters
    ----------
    n_bins : int, default 20
        Mass bins with equal QCD counts; jets outside the fitted range use the first or last bin.

    Attributes
    ----------
    edges_ : (n_bins + 1,) mass bin edges; quantiles_ : (n_bins, N_LEVELS) QCD score quantiles per bin
    """

    def __init__(self, n_bins: int = 20):
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ConfigError(f"n_bins: expected a positive integer, got {n_bins!r}")
        self.n_bins = n_bins

    def fit(self, scores, mass) -> MassDecorrelation:
        scores, mass = _pair(scores, mass)
        if len(scores) < 10 * self.n_bins:
            raise SchemaError(f"MassDecorrelation: {len(scores)} QCD jets are too few for {self.n_bins} "
                              f"mass bins (need >= {10 * self.n_bins})")
        edges = np.quantile(mass, np.linspace(0, 1, self.n_bins + 1))
        index = self._bin(mass, edges)
        levels = np.linspace(0, 1, N_LEVELS)
        self.edges_ = edges
        self.quantiles_ = np.stack([np.quantile(scores[index == b], levels) for b in range(self.n_bins)])
        return self

    @staticmethod
    def _bin(mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, mass, side="right") - 1, 0, len(edges) - 2)

    def transform(self, scores, mass) -> np.ndarray:
        """(N,) values in [0, 1]: the share of the bin's QCD jets with a lower score."""
        if not hasattr(self, "quantiles_"):
            raise NotFittedError("MassDecorrelation: call fit(...) first")
        scores, mass = _pair(scores, mass)
        index = self._bin(mass, self.edges_)
        levels = np.linspace(0, 1, N_LEVELS)
        out = np.empty(len(scores))
        for b in np.unique(index):
            rows = index == b
            out[rows] = np.interp(scores[rows], self.quantiles_[b], levels)
        return out


def _pair(scores, mass) -> tuple[np.ndarray, np.ndarray]:
    scores, mass = np.asarray(scores, dtype=np.float64), np.asarray(mass, dtype=np.float64)
    if scores.ndim != 1 or scores.shape != mass.shape:
        raise SchemaError(f"scores and mass: expected two (N,) arrays, got {scores.shape} and {mass.shape}")
    if not (np.isfinite(scores).all() and np.isfinite(mass).all()):
        raise SchemaError("scores and mass: NaN or inf values")
    return scores, mass
