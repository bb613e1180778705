"""MahalanobisDetector against a plain numpy reference; sharded fits; MaxLogitDetector."""

import json

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from nurdad.detectors import (
    DETECTORS,
    GaussianStatistics,
    MahalanobisDetector,
    MaxLogitDetector,
)
from nurdad.errors import ConfigError, NotFittedError, NurdadError, SchemaError


def toy_representations(n=240, d=6, seed=0, offset=50.0):
    """Two Gaussian classes with different means, anisotropic spread, far from the origin."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    reps = rng.normal(size=(n, d)) * np.linspace(0.2, 3.0, d) + offset
    reps[labels == 1] += np.linspace(2.0, -1.0, d)
    return reps, labels


def reference_distances(reps, means, covariance):
    """Plain loop over classes with an explicit inverse."""
    precision = np.linalg.inv(covariance)
    out = np.empty((len(reps), len(means)))
    for k, mu in enumerate(means):
        for i, r in enumerate(reps):
            out[i, k] = (r - mu) @ precision @ (r - mu)
    return out


def test_distances_match_plain_numpy_reference():
    reps, labels = toy_representations()
    det = MahalanobisDetector().fit(reps, labels)
    means = np.stack([reps[labels == k].mean(axis=0) for k in (0, 1)])
    np.testing.assert_allclose(det.means_, means, rtol=0, atol=1e-10)
    expected = reference_distances(reps, means, det.covariance_)
    np.testing.assert_allclose(det.distances(reps), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(det.score(reps), expected.min(axis=1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(det.precision_cholesky_ @ det.precision_cholesky_.T,
                               det.precision_, rtol=1e-10, atol=1e-12)
    assert np.allclose(det.precision_cholesky_, np.tril(det.precision_cholesky_))


def test_covariance_is_ledoit_wolf_of_pooled_class_centred_data():
    reps, labels = toy_representations()
    det = MahalanobisDetector().fit(reps, labels)
    centred = reps - det.means_[labels]
    cov, shrinkage = ledoit_wolf(centred, assume_centered=True)
    assert 0 < det.shrinkage_ < 1
    assert det.shrinkage_ == pytest.approx(shrinkage, rel=1e-10)
    np.testing.assert_allclose(det.covariance_, cov, rtol=1e-10, atol=1e-12)


def test_fixed_shrinkage_matches_formula():
    reps, labels = toy_representations()
    det = MahalanobisDetector(shrinkage=0.3).fit(reps, labels)
    centred = reps - det.means_[labels]
    emp = centred.T @ centred / len(reps)
    expected = 0.7 * emp + 0.3 * np.trace(emp) / emp.shape[0] * np.eye(emp.shape[0])
    np.testing.assert_allclose(det.covariance_, expected, rtol=1e-10, atol=1e-12)
    assert det.shrinkage_ == 0.3


@pytest.mark.parametrize("combine", ["min", "softmin", "mean"])
def test_chunked_and_shuffled_scores_equal_one_shot(combine):
    reps, labels = toy_representations()
    one_shot = MahalanobisDetector(combine=combine).fit(reps, labels)
    chunked = MahalanobisDetector(combine=combine, chunk_size=7).fit(reps, labels)
    np.testing.assert_allclose(chunked.score(reps), one_shot.score(reps), rtol=1e-12)
    perm = np.random.default_rng(1).permutation(len(reps))
    np.testing.assert_allclose(one_shot.score(reps[perm]), one_shot.score(reps)[perm], rtol=1e-12)
    single = np.array([one_shot.score(reps[i:i + 1])[0] for i in range(10)])
    np.testing.assert_allclose(single, one_shot.score(reps[:10]), rtol=1e-12)


def test_combine_rules():
    reps, labels = toy_representations()
    det = MahalanobisDetector(combine="softmin").fit(reps, labels)
    d = det.distances(reps)
    expected = -2 * np.log(np.exp(-d / 2).mean(axis=1))
    np.testing.assert_allclose(det.score(reps), expected, rtol=1e-10)
    assert (det.score(reps) >= d.min(axis=1) - 1e-12).all()  # softmin >= min
    det.combine = "mean"
    np.testing.assert_allclose(det.score(reps), d.mean(axis=1), rtol=1e-12)


def test_far_points_score_higher():
    reps, labels = toy_representations()
    det = MahalanobisDetector().fit(reps, labels)
    far = reps[:20] + 10 * reps.std(axis=0)
    assert det.score(far).min() > np.quantile(det.score(reps), 0.99)


@pytest.mark.parametrize("case", ["duplicate_column", "more_features_than_jets"])
def test_rank_deficient_representation_gives_finite_scores(case):
    rng = np.random.default_rng(2)
    if case == "duplicate_column":
        reps, labels = toy_representations()
        reps = np.c_[reps, reps[:, :1], np.full(len(reps), 3.0)]  # repeated and constant columns
    else:
        labels = np.repeat([0, 1], 5)
        reps = rng.normal(size=(10, 40))
    det = MahalanobisDetector().fit(reps, labels)
    assert det.shrinkage_ > 0
    assert np.isfinite(det.score(reps)).all()
    assert np.isfinite(det.score(rng.normal(size=(5, reps.shape[1])))).all()


def test_statistics_from_three_shards_equal_fit_on_all():
    reps, labels = toy_representations(offset=5.0)
    weights = np.random.default_rng(3).uniform(0.1, 2.0, len(reps))
    shards = np.array_split(np.arange(len(reps)), 3)
    shards[0] = shards[0][labels[shards[0]] == 0]  # a shard without class 1
    stats = [GaussianStatistics.from_data(reps[i], labels[i], [0, 1], weights[i]) for i in shards]
    total = stats[0] + stats[1] + stats[2]
    rebuilt = GaussianStatistics.from_flat(sum(s.to_flat() for s in stats), [0, 1], total.shift)
    np.testing.assert_array_equal(rebuilt.to_flat(), total.to_flat())
    keep = np.concatenate(shards)
    full = MahalanobisDetector().fit(reps[keep], labels[keep], sample_weight=weights[keep])
    sharded = MahalanobisDetector().fit_statistics(total)
    assert sharded.shrinkage_ == pytest.approx(full.shrinkage_, rel=1e-8)
    np.testing.assert_allclose(sharded.means_, full.means_, rtol=1e-12)
    np.testing.assert_allclose(sharded.covariance_, full.covariance_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sharded.score(reps), full.score(reps), rtol=1e-8)


def test_weights_act_as_frequency_weights():
    """Same estimate as repeating jets (with fixed shrinkage: Ledoit-Wolf counts N jets, not sum w)."""
    reps, labels = toy_representations(n=60)
    weights = np.random.default_rng(4).integers(1, 4, len(reps))
    weighted = MahalanobisDetector(shrinkage=0.1).fit(reps, labels, sample_weight=weights)
    repeated = MahalanobisDetector(shrinkage=0.1).fit(np.repeat(reps, weights, axis=0),
                                                      np.repeat(labels, weights))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-12)
    np.testing.assert_allclose(weighted.covariance_, repeated.covariance_, rtol=1e-9)


def test_shards_with_different_shift_cannot_be_added():
    reps, labels = toy_representations()
    a = GaussianStatistics.from_data(reps, labels, [0, 1])
    b = GaussianStatistics.from_data(reps, labels, [0, 1], shift=np.ones((2, reps.shape[1])))
    with pytest.raises(SchemaError, match="shift"):
        a + b


def test_to_dict_round_trip_gives_identical_scores():
    reps, labels = toy_representations()
    det = MahalanobisDetector(combine="softmin", chunk_size=100).fit(
        reps, labels, class_names=("qcd", "wz"))
    state = json.loads(json.dumps(det.to_dict()))
    back = MahalanobisDetector.from_dict(state)
    np.testing.assert_array_equal(back.score(reps), det.score(reps))
    assert back.class_names_ == ["qcd", "wz"] and back.combine == "softmin"


def test_class_with_one_jet_is_named():
    reps, labels = toy_representations()
    labels = labels.copy()
    labels[0] = 2
    with pytest.raises(SchemaError, match="'top'.*at least 2 jets"):
        MahalanobisDetector().fit(reps, labels, class_names=("qcd", "wz", "top"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r, y: (r, np.zeros_like(y)), "at least 2 background classes"),
        (lambda r, y: (np.where(np.arange(len(r))[:, None] == 5, np.nan, r), y), "row 5"),
        (lambda r, y: (r, y[:-1]), "labels: expected shape"),
        (lambda r, y: (r[:, 0], y), "2-d array"),
        (lambda r, y: (r, y.astype(float)), "integer"),
    ],
)
def test_bad_fit_input_raises_one_line_error(mutate, message):
    reps, labels = toy_representations()
    with pytest.raises(NurdadError, match=message) as info:
        MahalanobisDetector().fit(*mutate(reps, labels))
    assert "\n" not in str(info.value)


def test_wrong_dims_at_score_time_and_not_fitted():
    reps, labels = toy_representations()
    with pytest.raises(NotFittedError):
        MahalanobisDetector().score(reps)
    with pytest.raises(NotFittedError):
        MahalanobisDetector().to_dict()
    det = MahalanobisDetector().fit(reps, labels)
    with pytest.raises(SchemaError, match="expected 6 features"):
        det.score(reps[:, :5])


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="combine"):
        MahalanobisDetector(combine="max")
    with pytest.raises(ConfigError, match="shrinkage"):
        MahalanobisDetector(shrinkage=1.5)


def test_singular_covariance_without_shrinkage_raises():
    reps, labels = toy_representations()
    reps = np.c_[reps, reps[:, 0]]
    with pytest.raises(SchemaError, match="singular"):
        MahalanobisDetector(shrinkage=0.0).fit(reps, labels)


def test_max_logit_score():
    toy_logits = np.array([[2.0, -1.0], [0.5, 0.7], [-3.0, -4.0]])
    det = MaxLogitDetector()
    assert det.fit(toy_logits) is det
    np.testing.assert_array_equal(det.score(toy_logits), [-2.0, -0.7, 3.0])
    with pytest.raises(SchemaError, match="expected 2 features"):
        det.score(np.zeros((2, 3)))
    assert set(DETECTORS) == {"mahalanobis", "maxlogit"}
