"""Evaluation: metrics of hand-made scores, then `evaluate_runs` on tiny toy runs and the CLI."""

import json
import math

import numpy as np
import pytest

from helpers import toy_jet_file
from nurdad.baseline import BaselineConfig
from nurdad.cli import main
from nurdad.evaluate import (
    evaluate_runs,
    format_table,
    load_scores,
    metrics_current,
    score_metrics,
    scores_path,
    strict_json,
)
from nurdad.models.autoencoder import AutoencoderConfig
from nurdad.models.encoder import EncoderConfig
from nurdad.nurd.critic import CriticConfig
from nurdad.nurd.objective import NurdConfig
from nurdad.training import TrainConfig, train

TOY_COUNTS = {"qcd": 300, "wz": 300, "top": 100}
TOY_SIZE = 16  # pixels per side: small images keep the toy trainings to a second or two


def tiny_train_config(**changes) -> TrainConfig:
    """A TrainConfig small enough for unit tests on TOY_SIZE images (shared by the report/demo tests)."""
    encoder = EncoderConfig(image_size=TOY_SIZE, channels=(4, 8), dense=(16,), representation_dim=8)
    autoencoder = AutoencoderConfig(image_size=TOY_SIZE, channels=(4, 8), dense=(16,), latent_dim=8)
    nurd = NurdConfig(critic_warmup_steps=2, critic_steps=1, encoder=encoder,
                      critic=CriticConfig(hidden=(32, 16)))
    return TrainConfig(**{"epochs": 1, "batch_size": 64, "fresh_critic_epochs": 2, "nurd": nurd,
                          "baseline": BaselineConfig(autoencoder=autoencoder), **changes})


def toy_process_mass(rng, counts=(("qcd", 60), ("wz", 60), ("top", 40))):
    process = np.concatenate([[name] * n for name, n in counts])
    mass = np.concatenate([rng.normal({"qcd": 70, "wz": 90, "top": 170}[name], 15, n).clip(5)
                           for name, n in counts])
    return process, mass


# ----------------------------------------------------------------------------------- hand-made scores
def test_perfect_score_gives_auroc_one_everywhere():
    rng = np.random.default_rng(0)
    process, mass = toy_process_mass(rng)
    toy_scores = rng.uniform(0, 1, len(process)) + 10.0 * (process == "top")
    result = score_metrics(toy_scores, process, mass, ("qcd", "wz"), ["top"])
    top = result["anomalies"]["top"]
    assert top["vs_mix"]["auroc"] == 1.0 and top["vs_qcd"]["auroc"] == 1.0 and top["vs_wz"]["auroc"] == 1.0
    assert [row["auroc"] for row in result["robustness"]["mix"]["top"]] == [1.0] * 5
    shifts = result["robustness"]["mass_shift"]
    assert set(shifts) == {"qcd_harder", "qcd_as_wz"}
    assert all(s["anomalies"]["top"]["vs_mix"]["auroc"] == 1.0 for s in shifts.values())
    # the harder spectrum really is harder, and W/Z-like QCD sits near the W/Z masses
    assert shifts["qcd_harder"]["qcd_median_mass_gev"] > np.median(mass[process == "qcd"])
    assert 75 < shifts["qcd_as_wz"]["qcd_median_mass_gev"] < 105
    assert 0 < shifts["qcd_as_wz"]["effective_jets"] <= 60


def test_inverted_and_mass_score_are_measured_as_such():
    rng = np.random.default_rng(1)
    process, mass = toy_process_mass(rng)
    inverted = score_metrics(-10.0 * (process == "top") + rng.uniform(0, 1, len(process)), process, mass,
                             ("qcd", "wz"), ["top"])
    assert inverted["anomalies"]["top"]["vs_mix"]["auroc"] == 0.0
    mass_score = score_metrics(mass, process, mass, ("qcd", "wz"), ["top"])
    assert mass_score["qcd_mass"]["pearson"] == pytest.approx(1.0)
    assert mass_score["qcd_mass"]["distance_corr"] == pytest.approx(1.0)
    # a cut on mass itself sculpts the QCD mass strongly: 1/JSD near 1, far below a random cut's
    random_score = score_metrics(rng.uniform(0, 1, len(process)), process, mass, ("qcd", "wz"), ["top"])
    assert mass_score["qcd_mass"]["inverse_jsd_10"] < random_score["qcd_mass"]["inverse_jsd_10"]


def test_strict_json_replaces_non_finite_values():
    out = strict_json({"a": math.inf, "b": math.nan, "c": np.float32(1.5), "d": [np.int64(3), -math.inf]})
    assert out == {"a": "inf", "b": None, "c": 1.5, "d": [3, "-inf"]}
    json.dumps(out, allow_nan=False)  # raises on NaN/inf


# ------------------------------------------------------------------------------------------ toy runs
@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = toy_jet_file(root / "toy.h5", TOY_COUNTS, size=TOY_SIZE)
    train(tiny_train_config(), data, root / "nurd", show_progress=False)
    train(tiny_train_config(model="ae"), data, root / "ae", show_progress=False)
    return root, data


def test_evaluate_runs_writes_strict_json_and_scores(toy_runs):
    root, data = toy_runs
    out = root / "out" / "metrics.json"
    metrics = evaluate_runs([root / "nurd", root / "ae"], data, out=out)
    stored = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert stored == metrics
    assert set(metrics["runs"]) == {"nurd", "ae"}
    assert set(metrics["runs"]["nurd"]["scores"]) == {"nurd_md", "nurd_md_ddt", "nurd_ml", "d_qcd", "d_wz"}
    assert set(metrics["runs"]["ae"]["scores"]) == {"ae_mse", "ae_mse_ddt"}
    for run in metrics["runs"].values():
        assert run["on_training_data"] and run["parameters"]["total"] > 0
        for score in run["scores"].values():
            for versus in ("vs_qcd", "vs_wz", "vs_mix"):
                assert 0.0 <= score["anomalies"]["top"][versus]["auroc"] <= 1.0
            assert len(score["robustness"]["mix"]["top"]) == 5
            assert score["n_jets"] == {"qcd": 75, "wz": 75, "top": 100}  # test split + all anomalies
    nurd = metrics["runs"]["nurd"]
    assert nurd["parameters"]["detector"] > 0 and nurd["label"] == "NuRD (λ=1)"
    arrays = load_scores(scores_path(out))
    assert len(arrays["nurd"]["process"]) == 250 and len(arrays["nurd"]["scores"]["nurd_md"]) == 250
    assert arrays["images"]["top"].shape == (TOY_SIZE, TOY_SIZE)
    assert arrays["images"]["qcd"].sum() == pytest.approx(1.0, rel=1e-4)  # mean of unit-sum images
    assert metrics_current(out, [root / "nurd", root / "ae"], data)
    assert not metrics_current(out, [root / "nurd"], data)
    table = format_table(metrics)
    assert "NuRD-MD (λ=1)" in table and "AE (MSE+DDT)" in table and len(table.splitlines()) == 8


def test_other_data_is_evaluated_whole(toy_runs, tmp_path):
    root, _ = toy_runs
    other = toy_jet_file(tmp_path / "other.h5", {"qcd": 40, "wz": 40, "top": 30}, seed=5, size=TOY_SIZE)
    metrics = evaluate_runs([root / "ae"], other)
    score = metrics["runs"]["ae"]["scores"]["ae_mse"]
    assert not metrics["runs"]["ae"]["on_training_data"]
    assert score["n_jets"] == {"qcd": 40, "wz": 40, "top": 30}
    # the DDT is fitted on the run's own training QCD, read from its recorded training file
    assert metrics["runs"]["ae"]["scores"]["ae_mse_ddt"]["n_jets"] == score["n_jets"]


def test_cli_evaluate_prints_table_and_reports_errors(toy_runs, tmp_path, capsys):
    root, data = toy_runs
    out = tmp_path / "m.json"
    assert main(["-q", "evaluate", str(root / "ae"), "--data", str(data), "-o", str(out)]) == 0
    assert "AE (MSE)" in capsys.readouterr().out and scores_path(out).exists()
    assert main(["-q", "evaluate", str(tmp_path / "nowhere"), "--data", str(data)]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["-q", "evaluate", str(root / "ae"), "--data", str(data), "--anomalies", "hbb",
                 "-o", str(tmp_path / "x.json")]) == 2
    assert "hbb" in capsys.readouterr().err
    assert main(["-q", "evaluate", str(root / "ae"), "--data", str(data), "--anomalies", "wz",
                 "-o", str(tmp_path / "x.json")]) == 2
    assert "is a background" in capsys.readouterr().err
