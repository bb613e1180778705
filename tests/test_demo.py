"""The demo pipeline end to end on a toy file (no Pythia): trainings, evaluation, report."""

import json

import pytest

from helpers import toy_jet_file
from nurdad.cli import build_parser
from nurdad.demo import DEMO_JETS, demo_jets, run_demo
from nurdad.errors import ConfigError
from test_evaluate import TOY_COUNTS, TOY_SIZE, tiny_train_config


def test_demo_runs_end_to_end_on_a_given_file(tmp_path):
    data = toy_jet_file(tmp_path / "toy.h5", TOY_COUNTS, size=TOY_SIZE)
    report = run_demo(tmp_path / "demo", epochs=1, data=data, train_config=tiny_train_config(),
                      show_progress=False)
    assert report == tmp_path / "demo" / "report.html"
    page = report.read_text(encoding="utf-8")
    assert "numbers are noisy" in page and "300 qcd" in page and "trained for 1 epoch(s)" in page
    assert page.count("<img") >= 9
    runs = tmp_path / "demo" / "runs"
    for name in ("lambda_0", "lambda_0.3", "ae"):
        assert (runs / name / "summary.json").exists(), name
    assert not (tmp_path / "demo" / "jets.h5").exists()  # no simulation when data is given
    metrics = json.loads((runs / "metrics.json").read_text())
    assert {r["label"] for r in metrics["runs"].values()} == {"NuRD (λ=0.3)", "classifier (λ=0)", "AE"}
    assert all(r["best_epoch"] == 1 for r in metrics["runs"].values())


def test_demo_sizes_and_flags():
    assert DEMO_JETS == {"qcd": 1500, "wz": 1500, "top": 500, "hbb": 300}
    assert demo_jets(900) == {"qcd": 900, "wz": 900, "top": 300, "hbb": 180}
    with pytest.raises(ConfigError, match="--jets-per-class"):
        demo_jets(0)
    args = build_parser().parse_args(["demo", "--out", "d", "--jets-per-class", "600", "--epochs", "2",
                                      "--workers", "1"])
    assert (args.out, args.jets_per_class, args.epochs, args.workers) == ("d", 600, 2, 1)
    with pytest.raises(ConfigError, match="lambda"):
        run_demo("unused", lambda_penalty=0.0)
