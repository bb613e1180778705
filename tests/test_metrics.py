"""Metrics against hand-computed values and plain reference implementations."""

import json
import math

import numpy as np
import pytest

from nurdad import metrics
from nurdad.errors import NurdadError


def reference_distance_correlation(x, y):
    """Textbook dCor from full N x N double-centred distance matrices."""
    def centred(v):
        d = np.abs(v[:, None] - v[None, :])
        return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()
    a, b = centred(x), centred(y)
    return np.sqrt((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


def test_auroc_perfect_random_inverted():
    toy_bkg, toy_sig = np.arange(5.0), np.arange(5.0) + 10
    assert metrics.auroc(toy_bkg, toy_sig) == 1.0
    assert metrics.auroc(toy_sig, toy_bkg) == 0.0
    assert metrics.auroc(np.ones(4), np.ones(3)) == 0.5
    rng = np.random.default_rng(0)
    assert metrics.auroc(rng.normal(size=4000), rng.normal(size=4000)) == pytest.approx(0.5, abs=0.02)
    # one mis-ordered pair out of 2 x 2: (1 - 1/4)
    assert metrics.auroc([0.0, 2.0], [1.0, 3.0]) == pytest.approx(0.75)


def test_roc_curve_points_are_efficiencies():
    eps_b, eps_s = metrics.roc_curve_points([0.0, 1.0, 2.0, 3.0], [2.5, 3.5])
    assert (eps_b[0], eps_s[0]) == (0.0, 0.0) and (eps_b[-1], eps_s[-1]) == (1.0, 1.0)
    assert np.all(np.diff(eps_b) >= 0) and np.all(np.diff(eps_s) >= 0)


def test_background_rejection_hand_computed():
    toy_bkg = np.arange(8.0)  # 0..7
    toy_sig = np.array([1.5, 2.5, 3.5, 4.5])
    # eps_S = 0.5: cut score >= 3.5 keeps bkg {4, 5, 6, 7} -> eps_B = 1/2
    assert metrics.background_rejection(toy_bkg, toy_sig, 0.5) == pytest.approx(2.0)
    # eps_S = 0.25 at eps_B = 3/8 and 0.5 at 4/8: halfway gives eps_B = 3.5/8
    assert metrics.background_rejection(toy_bkg, toy_sig, 0.375) == pytest.approx(8 / 3.5)
    # eps_S = 1: cut score >= 1.5 keeps bkg {2, ..., 7}
    assert metrics.background_rejection(toy_bkg, toy_sig, 1.0) == pytest.approx(8 / 6)
    # no background passes: capped at N_B
    assert metrics.background_rejection(toy_bkg, toy_sig + 10, 0.5) == 8.0
    with pytest.raises(NurdadError, match="signal_efficiency"):
        metrics.background_rejection(toy_bkg, toy_sig, 0.0)


def test_jensen_shannon_divergence_hand_computed():
    assert metrics.jensen_shannon_divergence([1, 0, 0], [0, 0, 5]) == pytest.approx(1.0)
    assert metrics.jensen_shannon_divergence([2, 3, 5], [4, 6, 10]) == pytest.approx(0.0, abs=1e-15)
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # JSD = 1/2 [log2(4/3)] + 1/2 [1/2 log2(2/3) + 1/2 log2(2)]
    expected = 0.5 * math.log2(4 / 3) + 0.25 * (math.log2(2 / 3) + 1)
    assert metrics.jensen_shannon_divergence([10, 0], [3, 3]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(NurdadError, match="p_counts"):
        metrics.jensen_shannon_divergence([0, 0], [1, 1])


def test_pearson_sign_and_constant():
    x = np.arange(10.0)
    assert metrics.pearson_correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.pearson_correlation(x, -x) == pytest.approx(-1.0)
    assert math.isnan(metrics.pearson_correlation(x, np.ones(10)))


def test_distance_correlation_matches_reference_and_limits():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1500)  # > one 1024-row block
    y = x**2 + 0.5 * rng.normal(size=1500)
    ours = metrics.distance_correlation(x, y, max_samples=None)
    assert ours == pytest.approx(reference_distance_correlation(x, y), rel=1e-10)
    assert metrics.pearson_correlation(x, y) == pytest.approx(0.0, abs=0.1)  # Pearson misses it
    assert ours > 0.3
    assert metrics.distance_correlation(x, 3 - 2 * x) == pytest.approx(1.0, rel=1e-12)
    assert metrics.distance_correlation(x, rng.normal(size=1500)) < 0.1


def test_distance_correlation_subsamples_reproducibly():
    rng = np.random.default_rng(2)
    x = rng.normal(size=3000)
    y = x + rng.normal(size=3000)
    first = metrics.distance_correlation(x, y, max_samples=500, seed=7)
    assert first == metrics.distance_correlation(x, y, max_samples=500, seed=7)
    full = metrics.distance_correlation(x, y, max_samples=None)
    assert first == pytest.approx(full, abs=0.06) and first != full


def toy_qcd_mass(n=20000, seed=3):
    return np.random.default_rng(seed).gamma(4.0, 20.0, n)  # GeV, peak near 60


def test_mass_sculpting_independent_vs_mass_score():
    mass = toy_qcd_mass()
    bins = np.linspace(0, 300, 31)
    independent = np.random.default_rng(4).random(len(mass))
    flat = metrics.mass_sculpting(independent, mass, 0.1, bins)
    sculpted = metrics.mass_sculpting(mass, mass, 0.1, bins)
    assert flat["n_passing"] == 2000 and sculpted["n_passing"] == 2000
    assert flat["inverse_jsd"] > 100  # only statistical fluctuations
    assert sculpted["inverse_jsd"] < 3  # the cut keeps the high-mass tail only
    assert sculpted["threshold"] == pytest.approx(np.quantile(mass, 0.9), rel=1e-3)
    assert sculpted["jsd"] == pytest.approx(1 / sculpted["inverse_jsd"])


def test_mass_sculpting_keep_all_is_unsculpted():
    mass = toy_qcd_mass(1000)
    out = metrics.mass_sculpting(np.random.default_rng(0).random(1000), mass, 1.0, 20)
    assert out["jsd"] == pytest.approx(0.0, abs=1e-15) and out["inverse_jsd"] > 1e12


def test_reweight_to_mass_spectrum_matches_target():
    bins = np.linspace(0, 300, 31)
    source, target = toy_qcd_mass(20000, 5), toy_qcd_mass(20000, 6) * 1.3
    w = metrics.reweight_to_mass_spectrum(source, target, bins)
    assert w.shape == source.shape and (w >= 0).all() and w.mean() == pytest.approx(1.0)
    h_w, _ = np.histogram(source, bins, weights=w)
    h_t, _ = np.histogram(target, bins)
    matched = np.histogram(source, bins)[0] > 0
    np.testing.assert_allclose((h_w / h_w.sum())[matched],
                               (h_t / h_t[matched].sum())[matched], rtol=1e-10)


def test_mixture_scores_fractions():
    toy = {"qcd": np.zeros(1000), "wz": np.ones(400)}
    mix = metrics.mixture_scores(toy, {"qcd": 0.75, "wz": 0.25}, seed=0)
    # qcd limits the size: n = 1000 / 0.75 -> 1000 qcd + 333 wz
    assert len(mix) == 1333 and mix.sum() == 333
    mix = metrics.mixture_scores(toy, {"qcd": 0.5, "wz": 0.5}, seed=0)
    assert len(mix) == 800 and mix.mean() == pytest.approx(0.5)
    assert len(metrics.mixture_scores(toy, {"qcd": 1.0}, seed=0)) == 1000
    with pytest.raises(NurdadError, match="summing to 1"):
        metrics.mixture_scores(toy, {"qcd": 0.5, "wz": 0.2})
    with pytest.raises(NurdadError, match="'top'"):
        metrics.mixture_scores(toy, {"top": 1.0})


def toy_scores(seed=8):
    rng = np.random.default_rng(seed)
    mass = {"qcd": rng.gamma(4.0, 20.0, 3000), "wz": rng.normal(90, 8, 2000)}
    scores = {"qcd": rng.normal(0, 1, 3000), "wz": rng.normal(1, 1, 2000),
              "top": rng.normal(2, 1, 1000)}
    return scores, mass


def test_summarize_detector_structure_and_values():
    scores, mass = toy_scores()
    summary = metrics.summarize_detector(scores, mass)
    json.dumps(summary, allow_nan=False)
    top = summary["anomalies"]["top"]
    assert set(top) == {"vs_qcd", "vs_wz", "vs_mix"}
    assert set(top["vs_qcd"]) == {"auroc", "rejection_30", "rejection_50"}
    assert top["vs_qcd"]["auroc"] == metrics.auroc(scores["qcd"], scores["top"])
    assert top["vs_qcd"]["auroc"] > top["vs_mix"]["auroc"] > top["vs_wz"]["auroc"] > 0.7
    assert top["vs_qcd"]["rejection_30"] > top["vs_qcd"]["rejection_50"] > 1
    qcd = summary["qcd_mass"]
    assert set(qcd) == {"pearson", "distance_corr", "inverse_jsd_10", "inverse_jsd_1"}
    assert abs(qcd["pearson"]) < 0.1 and qcd["distance_corr"] < 0.1  # score independent of mass
    assert summary["n_jets"] == {"qcd": 3000, "wz": 2000, "top": 1000}


def test_summarize_detector_skips_absent_and_names_tiny_class():
    scores, mass = toy_scores()
    del scores["wz"]
    summary = metrics.summarize_detector(scores, mass)
    assert set(summary["anomalies"]["top"]) == {"vs_qcd", "vs_mix"}
    assert "qcd_mass" not in metrics.summarize_detector(scores)
    scores["top"] = scores["top"][:1]
    with pytest.raises(NurdadError, match="'top'"):
        metrics.summarize_detector(scores, mass)


def test_robustness_vs_mix():
    scores, _ = toy_scores()
    rows = metrics.robustness_vs_mix(scores, "top")
    assert [r["qcd_fraction"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rows[0]["auroc"] == pytest.approx(metrics.auroc(scores["wz"], scores["top"]))
    assert rows[-1]["auroc"] == pytest.approx(metrics.auroc(scores["qcd"], scores["top"]))
    aurocs = [r["auroc"] for r in rows]
    assert aurocs == sorted(aurocs)  # QCD is the easier background in this toy
    with pytest.raises(NurdadError, match="'h'"):
        metrics.robustness_vs_mix(scores, "h")


def test_auroc_in_mass_window_removes_the_separation_that_comes_from_the_mass():
    """Hand-made toy: QCD mass falling, 'top' mass peaked at 175 GeV; one score is the mass itself, the
    other adds a substructure-like shift to the signal at any mass."""
    rng = np.random.default_rng(0)
    qcd_mass, top_mass = rng.gamma(3.0, 30.0, 20_000), rng.normal(175.0, 12.0, 5_000)
    mass_only = metrics.auroc_in_mass_window(qcd_mass, qcd_mass, top_mass, top_mass)
    assert metrics.auroc(qcd_mass, top_mass) > 0.9  # the mass alone separates globally...
    assert mass_only["auroc"] == pytest.approx(0.5, abs=0.05)  # ...but not inside the window
    lo, hi = mass_only["window_gev"]
    assert lo == pytest.approx(163, abs=2) and hi == pytest.approx(187, abs=2)
    assert mass_only["n_signal"] == pytest.approx(0.68 * 5_000, rel=0.02)
    assert mass_only["n_background"] == int(((qcd_mass >= lo) & (qcd_mass <= hi)).sum())
    shifted = metrics.auroc_in_mass_window(rng.normal(0, 1, 20_000), qcd_mass,
                                           rng.normal(1, 1, 5_000), top_mass)
    assert shifted["auroc"] == pytest.approx(0.76, abs=0.04)  # Phi(1 / sqrt(2))
    empty = metrics.auroc_in_mass_window([1.0, 2.0], [10.0, 20.0], [3.0, 4.0], [500.0, 600.0])
    assert math.isnan(empty["auroc"]) and empty["n_background"] == 0


def test_summary_has_the_in_window_auroc_when_masses_are_given():
    rng = np.random.default_rng(1)
    scores = {"qcd": rng.normal(0, 1, 400), "wz": rng.normal(0, 1, 400), "top": rng.normal(1, 1, 300)}
    masses = {"qcd": rng.gamma(3.0, 30.0, 400), "wz": rng.normal(88, 8, 400), "top": rng.normal(175, 12, 300)}
    with_mass = metrics.summarize_detector(scores, masses)
    assert 0.6 < with_mass["anomalies"]["top"]["vs_qcd_in_mass_window"]["auroc"] < 0.95
    assert "vs_qcd_in_mass_window" not in metrics.summarize_detector(scores)["anomalies"]["top"]
