"""The HTML report and the sweep behind it, on a tiny toy sweep (lambda 0 and 1 plus the AE)."""

import base64
import json
import re

import pytest

from helpers import toy_jet_file
from nurdad.cli import main
from nurdad.errors import ConfigError, RunDirError
from nurdad.report import build_report, collect_inputs, resolve_metrics
from nurdad.sweep import run_sweep
from test_evaluate import TOY_COUNTS, TOY_SIZE, tiny_train_config

FIGURE_TITLES = ["Robustness to the background mix (top)", "ROC curves: top vs QCD+W/Z",
                 "Score distributions per class", "QCD mass after score cuts", "Mean jet image per process",
                 "Weight diagnostic", "Training curves (lambda_0", "Training curves (lambda_1",
                 "Training curves (ae", "Trade-off (sweep, top)"]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = toy_jet_file(root / "toy.h5", TOY_COUNTS, size=TOY_SIZE)
    sweep = run_sweep(data, root / "sweep", tiny_train_config(), lambdas=(0.0, 1.0), show_progress=False)
    return root, data, sweep


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_sweep_writes_points_plot_and_resumes(toy_sweep, monkeypatch):
    root, data, sweep = toy_sweep
    assert [p["lambda"] for p in sweep["points"]] == [0.0, 1.0] and sweep["anomaly"] == "top"
    assert sweep["ae"]["score"] == "ae_mse" and 0 <= sweep["ae"]["auroc_vs_mix"] <= 1
    assert [p["score"] for p in sweep["ddt"]] == ["nurd_md_ddt", "ae_mse_ddt"]
    assert json.loads((root / "sweep" / "sweep.json").read_text()) == sweep
    assert (root / "sweep" / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    # rerunning trains and evaluates nothing: every run is finished and the metrics are current
    import nurdad.sweep as sweep_module

    monkeypatch.setattr("nurdad.training.train", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(sweep_module, "evaluate_runs", lambda *a, **k: pytest.fail("evaluated again"))
    assert run_sweep(data, root / "sweep", tiny_train_config(), lambdas=(0.0, 1.0),
                     show_progress=False) == sweep
    with pytest.raises(ConfigError, match="--lambdas"):
        run_sweep(data, root / "bad", tiny_train_config(), lambdas=(1.0, -1.0))


def test_report_from_sweep_has_every_figure_and_table(toy_sweep, tmp_path):
    root, _, _ = toy_sweep
    out = build_report([root / "sweep"], tmp_path / "report.html", note="toy numbers, noisy")
    page = out.read_text(encoding="utf-8")
    images = _images(page)
    assert len(images) == len(FIGURE_TITLES)
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000 for png in images)
    for title in FIGURE_TITLES:
        assert title in page, title
    for row in ("NuRD-MD (λ=1)", "NuRD-ML (λ=1)", "λ = 0 classifier (MD)", "λ = 0 classifier (MD+DDT)",
                "AE (MSE)", "AE (MSE+DDT)"):
        assert f"<td>{row}</td>" in page, row
    assert "<th>AUC vs QCD at the top mass</th>" in page
    assert "toy numbers, noisy" in page and "nurdad commit" in page
    assert str(root / "toy.h5") in page  # the data files of the provenance block
    assert not (tmp_path / "report.metrics.json").exists()  # the sweep's own evaluation was used


def test_report_from_run_dirs_evaluates_next_to_the_page(toy_sweep, tmp_path, capsys):
    root, _, _ = toy_sweep
    runs = [str(root / "sweep" / "lambda_1"), str(root / "sweep" / "ae")]
    assert main(["-q", "report", *runs, "-o", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r.html")
    metrics_file = tmp_path / "r.metrics.json"
    assert set(json.loads(metrics_file.read_text())["runs"]) == {"lambda_1", "ae"}
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Trade-off" not in page and len(_images(page)) == len(FIGURE_TITLES) - 2
    # the evaluation is reused while current
    stamp = metrics_file.stat().st_mtime_ns
    assert resolve_metrics(collect_inputs(runs), tmp_path / "r.html") == metrics_file
    assert metrics_file.stat().st_mtime_ns == stamp


def test_report_rejects_what_is_not_a_run(tmp_path, capsys):
    with pytest.raises(RunDirError, match="neither a run directory"):
        collect_inputs([tmp_path])
    assert main(["-q", "report", str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
