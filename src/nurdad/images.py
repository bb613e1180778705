"""Jet images: constituents -> (N, H, W) pT images with the standard preprocessing.

Data contract
-------------
Input constituents are (N, M, 3) arrays of [pT (GeV), eta, phi] (absolute; padding rows pT = 0) and the
jet axis (eta, phi). Coordinates relative to the axis are u = delta-eta (horizontal) and
v = delta-phi (vertical, wrapped to (-pi, pi]). The image is ``image[n, i, j]`` with row ``i`` indexing
v and column ``j`` indexing u, both over [-half_width, +half_width], so ``plt.imshow(image,
origin="lower")`` shows u to the right and v upwards. A pixel holds the summed constituent pT.

Preprocessing, each step switchable (the usual chain of "QCD or What?", Heimel et al. 2018, and
Macaluso & Shih 2018):

1. centre: shift (u, v) so the pT-weighted centroid sits at the origin (the centre of the image);
2. rotate: rotate about the centroid so the principal axis of the pT-weighted second-moment tensor
   is vertical (along v);
3. flip: reflect u and/or v so the quadrant with the largest pT sum is the upper-right one
   (u > 0, v > 0);
4. normalize: divide by the image's pT sum (unit-sum images; an empty image stays zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nurdad.errors import ConfigError
from nurdad.kinematics import wrap_phi


@dataclass(frozen=True)
class ImageConfig:
    size: int = 50             # pixels per side
    half_width: float = 0.8    # image covers [-half_width, +half_width] in delta-eta and delta-phi
    center: bool = True        # centre on the pT centroid
    rotate: bool = True        # principal axis vertical
    flip: bool = True          # hardest quadrant upper-right
    normalize: bool = True     # unit pT sum

    def __post_init__(self):
        if self.size < 2:
            raise ConfigError(f"images.size: expected an integer >= 2, got {self.size}")
        if not self.half_width > 0:
            raise ConfigError(f"images.half_width: expected > 0, got {self.half_width}")


def relative_coordinates(
    constituents: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, u = delta-eta, v = delta-phi) per constituent, each (N, M)."""
    pt = constituents[..., 0].astype(np.float64)
    u = constituents[..., 1] - np.asarray(jet_eta, dtype=np.float64)[:, None]
    v = wrap_phi(constituents[..., 2] - np.asarray(jet_phi, dtype=np.float64)[:, None])
    return pt, u, v


def preprocess_coordinates(
    pt: np.ndarray, u: np.ndarray, v: np.ndarray, config: ImageConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Apply centring, rotation and flipping to (N, M) coordinates weighted by pT (N, M)."""
    total = pt.sum(axis=1, keepdims=True)
    safe_total = np.where(total > 0, total, 1.0)
    if config.center:
        u = u - (pt * u).sum(axis=1, keepdims=True) / safe_total
        v = v - (pt * v).sum(axis=1, keepdims=True) / safe_total
    if config.rotate:
        u, v = _rotate_principal_axis_vertical(pt, u, v)
    if config.flip:
        u, v = _flip_hardest_quadrant_upper_right(pt, u, v)
    return u, v


def _rotate_principal_axis_vertical(pt, u, v):
    suu = (pt * u * u).sum(axis=1)
    svv = (pt * v * v).sum(axis=1)
    suv = (pt * u * v).sum(axis=1)
    # Principal axis angle from the u axis: tan(2 alpha) = 2 suv / (suu - svv).
    alpha = 0.5 * np.arctan2(2 * suv, suu - svv)
    theta = (np.pi / 2 - alpha)[:, None]  # rotate the axis at angle alpha onto angle pi/2
    cos, sin = np.cos(theta), np.sin(theta)
    return u * cos - v * sin, u * sin + v * cos


def _flip_hardest_quadrant_upper_right(pt, u, v):
    quadrants = np.stack(
        [
            (pt * ((u > 0) & (v > 0))).sum(axis=1),
            (pt * ((u <= 0) & (v > 0))).sum(axis=1),
            (pt * ((u <= 0) & (v <= 0))).sum(axis=1),
            (pt * ((u > 0) & (v <= 0))).sum(axis=1),
        ],
        axis=1,
    )
    hardest = quadrants.argmax(axis=1)
    flip_u = np.isin(hardest, (1, 2))[:, None]
    flip_v = np.isin(hardest, (2, 3))[:, None]
    return np.where(flip_u, -u, u), np.where(flip_v, -v, v)


def pixelize(pt: np.ndarray, u: np.ndarray, v: np.ndarray, config: ImageConfig) -> np.ndarray:
    """Histogram (N, M) constituents into (N, size, size) float32 images; outside pixels are dropped."""
    n_jets = pt.shape[0]
    size = config.size
    scale = size / (2 * config.half_width)
    col = np.floor((u + config.half_width) * scale).astype(np.int64)
    row = np.floor((v + config.half_width) * scale).astype(np.int64)
    inside = (pt > 0) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
    jet = np.broadcast_to(np.arange(n_jets)[:, None], pt.shape)
    flat = (jet * size + row) * size + col
    images = np.bincount(flat[inside], weights=pt[inside], minlength=n_jets * size * size)
    return images.reshape(n_jets, size, size).astype(np.float32)


def jet_images(
    constituents: np.ndarray,
    jet_eta: np.ndarray,
    jet_phi: np.ndarray,
    config: ImageConfig = ImageConfig(),
) -> np.ndarray:
    """Preprocessed pT images, (N, size, size) float32, from (N, M, 3) [pT, eta, phi] constituents."""
    pt, u, v = relative_coordinates(constituents, jet_eta, jet_phi)
    u, v = preprocess_coordinates(pt, u, v, config)
    images = pixelize(pt, u, v, config)
    if config.normalize:
        sums = images.sum(axis=(1, 2), keepdims=True)
        images = np.divide(images, sums, out=np.zeros_like(images), where=sums > 0)
    return images
