"""The DDT mass decorrelation: uniform on the fitted background at every mass, order kept in a bin."""

import numpy as np
import pytest

from nurdad.ddt import MassDecorrelation
from nurdad.errors import NotFittedError, SchemaError


def toy_sculpting_score(n, seed=0):
    """Hand-made toy: QCD-like mass spectrum and a score that grows with the mass (corr ~0.8)."""
    rng = np.random.default_rng(seed)
    mass = rng.gamma(4.0, 20.0, n)
    return mass / 50 + rng.normal(0, 0.6, n), mass


def test_transformed_score_is_uniform_and_uncorrelated_with_mass():
    scores, mass = toy_sculpting_score(20_000)
    assert abs(np.corrcoef(scores, mass)[0, 1]) > 0.7
    ddt = MassDecorrelation().fit(scores, mass)
    test_scores, test_mass = toy_sculpting_score(20_000, seed=1)
    out = ddt.transform(test_scores, test_mass)
    assert abs(np.corrcoef(out, test_mass)[0, 1]) < 0.03
    # a cut keeping 10% of the background keeps ~10% in every mass quartile: no sculpting
    kept = out > 0.9
    quartiles = np.quantile(test_mass, [0, 0.25, 0.5, 0.75, 1])
    for lo, hi in zip(quartiles[:-1], quartiles[1:], strict=True):
        assert kept[(test_mass >= lo) & (test_mass < hi)].mean() == pytest.approx(0.1, abs=0.02)
    assert out.min() >= 0 and out.max() <= 1


def test_order_is_kept_at_fixed_mass_and_outside_the_fitted_range():
    ddt = MassDecorrelation(n_bins=5).fit(*toy_sculpting_score(2_000))
    for m in (80.0, 1e4, -5.0):  # inside, above and below the fitted masses
        values = ddt.transform(np.linspace(-2, 8, 50), np.full(50, m))
        assert np.all(np.diff(values) >= 0) and values[-1] > values[0]


def test_errors():
    with pytest.raises(NotFittedError):
        MassDecorrelation().transform([1.0], [1.0])
    with pytest.raises(SchemaError, match="too few"):
        MassDecorrelation(n_bins=20).fit(np.ones(50), np.arange(50.0))
    with pytest.raises(SchemaError, match="NaN"):
        MassDecorrelation(n_bins=1).fit(np.r_[np.ones(20), np.nan], np.arange(21.0))
