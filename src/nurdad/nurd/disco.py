"""A closed-form dependence penalty: weighted distance correlation between r and z within each class.

DisCo (Kasieczka & Shih, PRL 125 (2020) 122001) decorrelates a jet tagger from the jet mass with the
squared distance correlation dCor^2(score, mass), which is zero if and only if the two are independent.
Here it is the alternative to the NuRD critic: the same quantity, I(r; z | y) = 0, is driven to zero,
but the "critic" is exact on every batch (O(B^2 D) arithmetic, no adversary to keep up to date).

The penalty is sum_k p_k [dCor_w^2(r_k, z_k) + dCor_w^2(s_k, z_k)], r_k the class-k representations
of the batch centred and whitened like the Mahalanobis detector sees them and s_k their
min-Mahalanobis score (`detector_view`), weighted by the nuisance weights w. Its gradient is a
smooth function of r: no adversarial game, so nothing can collapse by chasing a critic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nurdad.nurd.critic import batch_whitening


def _centred_distances(x: Tensor, w: Tensor) -> Tensor:
    """Weighted double-centred Euclidean distance matrix of the rows of x (B, F); w (B,) mean 1."""
    squared = (x.unsqueeze(1) - x.unsqueeze(0)).square().sum(-1)
    distances = (squared + 1e-12).sqrt()  # smooth at 0: the diagonal has a finite gradient
    row = (distances * w).mean(dim=1)  # (B,) weighted mean over the second index
    return distances - row.unsqueeze(0) - row.unsqueeze(1) + (row * w).mean()


def distance_correlation_sq(x: Tensor, z: Tensor, weights: Tensor) -> Tensor:
    """Weighted squared distance correlation (a scalar in [0, 1]) of x (B, F) and z (B,) or (B, Z).

    The weighted V-statistic of the DisCo paper's reference implementation: with A, B the
    double-centred distance matrices, dCov^2 = mean_ij w_i w_j A_ij B_ij, normalized by
    sqrt(dVar^2(x) dVar^2(z)). Weights are rescaled to mean 1.
    """
    x = x.reshape(x.shape[0], -1)
    z = z.reshape(z.shape[0], -1).to(x.dtype)
    w = weights.to(x.dtype) / weights.mean()
    a, b = _centred_distances(x, w), _centred_distances(z, w)

    def moment(p: Tensor, q: Tensor) -> Tensor:
        return ((p * q * w).mean(dim=1) * w).mean()

    return moment(a, b) / (moment(a, a) * moment(b, b)).clamp_min(1e-24).sqrt()


def detector_view(r: Tensor, y: Tensor, n_classes: int, shrinkage: float) -> tuple[Tensor, Tensor]:
    """r as the Mahalanobis detector sees it, with the batch's (detached) class means and pooled
    covariance: (r centred on its own class mean and whitened (B, D), the min-over-classes
    Mahalanobis score (B,)); both differentiable in r."""
    means, inverse_cholesky = batch_whitening(r, y, n_classes, shrinkage)
    white = (r.unsqueeze(1) - means.unsqueeze(0)) @ inverse_cholesky.T  # (B, K, D)
    own = white[torch.arange(r.shape[0], device=r.device), y.long()]
    return own, white.square().sum(-1).min(dim=1).values


def disco_penalty(r: Tensor, y: Tensor, z: Tensor, weights: Tensor, n_classes: int,
                  shrinkage: float) -> Tensor:
    """sum_k p_k [dCor_w^2(white r_k, z_k) + dCor_w^2(score_k, z_k)]: the dependence on z within
    each class of the whitened representation and of the detector's score (`detector_view`).

    Both terms are needed on real jets (RESULTS.md): the representation term alone leaves a
    dependence in the spread of r that Euclidean distances barely see, the score term alone leaves
    the representation free to keep the mass. p_k is the class's share of the batch weight; classes
    with fewer than 3 jets in the batch are skipped.
    """
    white, scores = detector_view(r, y, n_classes, shrinkage)
    total = weights.sum()
    penalty = torch.zeros((), dtype=r.dtype, device=r.device)
    for k in range(n_classes):
        rows = y == k
        if int(rows.sum()) < 3:
            continue
        share = weights[rows].sum() / total
        penalty = penalty + share * (distance_correlation_sq(white[rows], z[rows], weights[rows])
                                     + distance_correlation_sq(scores[rows], z[rows], weights[rows]))
    return penalty
