"""The closed-form DisCo dependence penalty and the batch whitening it shares with the critic."""

import numpy as np
import pytest
import torch

from nurdad.metrics import distance_correlation
from nurdad.nurd.critic import whitened
from nurdad.nurd.disco import detector_view, disco_penalty, distance_correlation_sq


def toy_pairs(n, dependent, seed=0):
    """Hand-made toy: r (N, 3) normal; if dependent, the spread of r[:, 1] grows with |z|."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    r = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if dependent:
        r[:, 1] = r[:, 1] * (0.2 + z.abs())
    return r, z


def test_unweighted_value_matches_the_numpy_metric():
    r, z = toy_pairs(300, dependent=True)
    ours = distance_correlation_sq(r[:, 1], z, torch.ones(300)).item()
    reference = distance_correlation(r[:, 1].numpy(), z.numpy(), max_samples=None) ** 2
    assert ours == pytest.approx(reference, rel=1e-6)


def test_detects_a_dependence_in_the_spread_and_is_small_for_independence():
    values = {}
    for dependent in (True, False):
        r, z = toy_pairs(500, dependent)
        values[dependent] = distance_correlation_sq(r[:, 1].square(), z, torch.ones(500)).item()
    assert values[True] > 5 * values[False]
    assert values[False] < 0.03


def test_integer_weights_equal_repeated_rows():
    r, z = toy_pairs(40, dependent=True)
    w = torch.tensor([1.0, 2.0, 3.0, 1.0] * 10, dtype=torch.float64)
    repeated = w.long()
    expanded = distance_correlation_sq(r.repeat_interleave(repeated, 0), z.repeat_interleave(repeated),
                                       torch.ones(int(repeated.sum())))
    assert distance_correlation_sq(r, z, w).item() == pytest.approx(expanded.item(), rel=1e-6)


def test_penalty_gradient_is_finite_and_order_free():
    r, z = toy_pairs(64, dependent=True)
    r = r.float().requires_grad_()
    y = torch.arange(64) % 2
    w = torch.ones(64)

    def penalty(order):
        return disco_penalty(r[order], y[order], z[order].float(), w[order], 2, 1e-3)

    value = penalty(torch.arange(64))
    value.backward()
    assert torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0
    shuffled = penalty(torch.randperm(64, generator=torch.Generator().manual_seed(1)))
    assert shuffled.item() == pytest.approx(value.item(), rel=1e-5)


def test_detector_view_is_the_whitened_r_and_the_min_mahalanobis_distance():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = torch.arange(200) % 2
    r[y == 1] += 3.0
    white, scores = detector_view(r, y, 2, shrinkage=1e-9)
    np.testing.assert_allclose(white.numpy(), whitened(r, y, 2, shrinkage=1e-9).numpy(), rtol=1e-10)
    scores = scores.numpy()
    x, labels = r.numpy(), y.numpy()
    means = np.stack([x[labels == k].mean(0) for k in (0, 1)])
    centred = x - means[labels]
    precision = np.linalg.inv(centred.T @ centred / (200 - 2))
    direct = np.min([np.einsum("nd,de,ne->n", x - mu, precision, x - mu) for mu in means], axis=0)
    np.testing.assert_allclose(scores, direct, rtol=1e-6)


def test_whitened_batch_has_identity_within_class_covariance():
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(5, 5, generator=g, dtype=torch.float64)
    r = torch.randn(400, 5, generator=g, dtype=torch.float64) @ mix * torch.tensor([1e-3, 1, 1, 1, 10.0])
    y = torch.arange(400) % 2
    white = whitened(r, y, 2, shrinkage=1e-13)
    cov = white.T @ white / (400 - 2)
    np.testing.assert_allclose(cov.numpy(), np.eye(5), atol=1e-4)
