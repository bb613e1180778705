"""Nuisance randomization weights: y and z independent after weighting, normalization, errors."""

import numpy as np
import pytest

from nurdad.config import from_dict
from nurdad.errors import ConfigError, NurdadError
from nurdad.nurd.weights import (
    WeightConfig,
    nuisance_weights,
    plot_weight_diagnostic,
    total_variation,
    weighted_histograms,
)


def toy_masses(seed=0, n0=6000, n1=3000):
    """Class 0 ~ N(60, 15) GeV, class 1 ~ N(80, 15) GeV: z strongly depends on y."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)]
    mass = np.r_[rng.normal(60, 15, n0), rng.normal(80, 15, n1)]
    return labels, mass


def class_tv(mass, labels, weights):
    edges = np.quantile(mass, np.linspace(0.02, 0.98, 16))
    return total_variation(weighted_histograms(mass, labels, weights, edges), edges)


@pytest.mark.parametrize("method", ["exact", "classifier"])
def test_weighting_makes_the_class_mass_spectra_agree(method):
    labels, mass = toy_masses()
    weights = nuisance_weights(labels, mass, WeightConfig(method=method), seed=1)
    assert class_tv(mass, labels, None) > 0.4  # measured 0.48
    assert class_tv(mass, labels, weights) < 0.06  # measured 0.017 (exact), 0.019 (classifier)


@pytest.mark.parametrize("method", ["exact", "classifier"])
def test_class_totals_equal_priors_and_mean_is_one(method):
    labels, mass = toy_masses(n0=3000, n1=1000)
    weights = nuisance_weights(labels, mass, WeightConfig(method=method))
    assert weights.dtype == np.float64 and weights.shape == labels.shape and (weights > 0).all()
    assert weights.mean() == pytest.approx(1.0)
    for k, prior in enumerate([0.75, 0.25]):
        assert weights[labels == k].sum() / weights.sum() == pytest.approx(prior)


def test_exact_weights_match_hand_counts():
    # bin A holds classes (0, 0, 1), bin B (0, 1, 1, 1): p(y|z) = 2/3, 1/3 | 1/4, 3/4
    labels = np.array([0, 0, 1, 0, 1, 1, 1])
    mass = np.array([10.0, 11.0, 12.0, 50.0, 51.0, 52.0, 53.0])
    weights = nuisance_weights(labels, mass, WeightConfig(n_bins=2))
    raw = 1 / np.array([2 / 3, 2 / 3, 1 / 3, 1 / 4, 3 / 4, 3 / 4, 3 / 4])
    for k, count in [(0, 3), (1, 4)]:
        expected = raw[labels == k] * count / raw[labels == k].sum()
        np.testing.assert_allclose(weights[labels == k], expected)


def test_clipping_bounds_the_weight_ratio_within_a_class():
    labels, mass = toy_masses(n0=2000, n1=2000)
    mass[labels == 1] += 60  # nearly separated classes: p(y|z) -> 0 in the tails
    config = WeightConfig(min_prob=0.1, max_weight=5.0)
    weights = nuisance_weights(labels, mass, config)
    for k in (0, 1):
        w = weights[labels == k]
        assert w.max() / w.min() <= 5.0 + 1e-9


def test_two_nuisance_columns_use_joint_cells():
    labels, mass = toy_masses(n0=4000, n1=4000)
    rng = np.random.default_rng(3)
    pt = rng.normal(600, 25, len(mass)) + 15 * labels  # a second nuisance, also class dependent
    weights = nuisance_weights(labels, np.c_[mass, pt], WeightConfig(n_bins=8))
    assert class_tv(mass, labels, weights) < 0.08
    assert class_tv(pt, labels, None) > 0.15 and class_tv(pt, labels, weights) < 0.05


def test_classifier_weights_are_reproducible_for_a_seed():
    labels, mass = toy_masses(n0=1500, n1=1500)
    config = WeightConfig(method="classifier", n_folds=3)
    first = nuisance_weights(labels, mass, config, seed=7)
    np.testing.assert_array_equal(first, nuisance_weights(labels, mass, config, seed=7))


@pytest.mark.parametrize("labels, mass, kwargs, message", [
    (np.array([0, 0, 2, 2]), np.arange(4.0), {}, "class 1 has no jets"),
    (np.array([0, 0, 1, 1]), np.arange(4.0), {"n_classes": 3}, "class 2 has no jets"),
    (np.zeros(4, dtype=int), np.arange(4.0), {}, "only one class"),
    (np.array([0, 1, 0, 1]), np.array([1.0, np.nan, 2.0, 3.0]), {}, "NaN"),
    (np.array([0, 1, 0, 1]), np.arange(3.0), {}, "nuisance: expected shape"),
    (np.array([0.0, 1.0]), np.arange(2.0), {}, "integer class labels"),
    (np.array([-1, 1]), np.arange(2.0), {}, ">= 0"),
])
def test_bad_inputs_raise_nurdad_error(labels, mass, kwargs, message):
    with pytest.raises(NurdadError, match=message):
        nuisance_weights(labels, mass, WeightConfig(), **kwargs)


def test_classifier_needs_enough_jets_per_class_for_the_folds():
    with pytest.raises(NurdadError, match="n_folds"):
        nuisance_weights(np.array([0] * 10 + [1] * 2), np.arange(12.0),
                         WeightConfig(method="classifier", n_folds=3))


@pytest.mark.parametrize("values, field", [
    ({"method": "kde"}, "weights.method"),
    ({"n_bins": 0}, "weights.n_bins"),
    ({"n_folds": 1}, "weights.n_folds"),
    ({"min_prob": 0.0}, "weights.min_prob"),
    ({"max_weight": -1.0}, "weights.max_weight"),
])
def test_config_errors_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(WeightConfig, values, "weights")


def test_weighted_histograms_are_normalized_densities():
    labels, mass = toy_masses(n0=500, n1=300)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(mass))
    edges = np.linspace(mass.min(), mass.max(), 21)
    hists = weighted_histograms(mass, labels, weights, edges)
    assert hists.shape == (2, 20)
    np.testing.assert_allclose((hists * np.diff(edges)).sum(axis=1), 1.0)
    assert weighted_histograms(mass, labels, weights, 7).shape == (2, 7)


def test_plot_weight_diagnostic_writes_a_png_atomically(tmp_path):
    labels, mass = toy_masses(n0=400, n1=200)
    weights = nuisance_weights(labels, mass, WeightConfig(n_bins=10))
    path = tmp_path / "plots" / "weights.png"
    plot_weight_diagnostic(mass, labels, weights, ["QCD", "W/Z"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["weights.png"]  # no temporary left
