"""Jet four-vector quantities from massless constituents given as (pT, eta, phi).

Shared by the simulation checks, the image preprocessing and the dataset importers, so that every jet
in nurdad gets its mass and axis the same way.
"""

from __future__ import annotations

import numpy as np


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Map angles to (-pi, pi]."""
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def jet_four_vectors(constituents: np.ndarray) -> dict[str, np.ndarray]:
    """Sum massless constituents into jets.

    Parameters
    ----------
    constituents : (N, M, 3) array of [pT (GeV), eta, phi]; padding rows have pT = 0.

    Returns
    -------
    dict with (N,) float64 arrays 'pt', 'eta', 'phi', 'mass' (GeV); mass^2 < 0 from rounding is clipped.
    """
    pt = constituents[..., 0].astype(np.float64)
    eta = constituents[..., 1].astype(np.float64)
    phi = constituents[..., 2].astype(np.float64)
    px = (pt * np.cos(phi)).sum(axis=1)
    py = (pt * np.sin(phi)).sum(axis=1)
    pz = (pt * np.sinh(eta)).sum(axis=1)
    energy = (pt * np.cosh(eta)).sum(axis=1)
    jet_pt = np.hypot(px, py)
    mass2 = energy**2 - px**2 - py**2 - pz**2
    with np.errstate(divide="ignore", invalid="ignore"):
        jet_eta = np.arcsinh(np.where(jet_pt > 0, pz / jet_pt, 0.0))
    return {
        "pt": jet_pt,
        "eta": jet_eta,
        "phi": np.arctan2(py, px),
        "mass": np.sqrt(np.clip(mass2, 0.0, None)),
    }
