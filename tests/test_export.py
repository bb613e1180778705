"""Export: the folded Mahalanobis head, ONNX vs PyTorch, hls4ml's fixed-point emulation vs float.

Tolerances, and why:
- MahalanobisHead vs MahalanobisDetector (float32 vs float64) on the same float32 reps: rel 1e-5.
- ONNX (onnxruntime) vs PyTorch, a detector whose classes are spread about as widely as the
  representation varies: rel 1e-5 on scores and distances. On trained encoders the class means sit
  ~1e3 within-class standard deviations from 0, which amplifies the ~1e-7 float32 differences of
  the two runtimes' convolutions: rel 2e-4 there.
- hls4ml emulation (the chosen 16-bit types) vs float on toy jets: median relative score error
  below 5%, rank correlation above 0.95, AUROC within the 0.01 target.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import toy_images, toy_jet_file
from nurdad.cli import main
from nurdad.data import open_dataset
from nurdad.detectors import MahalanobisDetector
from nurdad.errors import ConfigError, NurdadError
from nurdad.export import ExportConfig, export_run
from nurdad.export.base import check_exportable, fixed_point_bits, require
from nurdad.export.modules import DetectorModel, MahalanobisHead
from nurdad.models.encoder import EncoderConfig, JetEncoder
from nurdad.nurd.objective import NurdConfig
from nurdad.scoring import TrainedRun, load_run, score_dataset
from nurdad.training import TrainConfig, train


def toy_reps(n=300, d=20, seed=0, offset=0.0):
    """Two Gaussian classes, anisotropic, centred `offset` away from the origin; float32 values."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    reps = rng.normal(size=(n, d)) * np.linspace(0.1, 2.0, d) + offset
    reps[labels == 1] += np.linspace(1.0, -1.0, d)
    return reps.astype(np.float32), labels


def toy_run(tmp_path, detector=None, seed=0) -> TrainedRun:
    """An untrained encoder with a detector (fitted on toy reps unless given): a run without training."""
    torch.manual_seed(seed)
    encoder = JetEncoder(EncoderConfig()).eval()
    if detector is None:
        reps, labels = toy_reps()
        detector = MahalanobisDetector().fit(reps, labels, class_names=("qcd", "wz"))
    return TrainedRun(tmp_path, TrainConfig(), ("qcd", "wz"), encoder, detector, (50, 50), [], 0)


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_mahalanobis_head_equals_detector(offset):
    reps, labels = toy_reps(offset=offset)
    detector = MahalanobisDetector().fit(reps, labels, class_names=("qcd", "wz"))
    head = MahalanobisHead(detector)
    test, _ = toy_reps(n=64, seed=1, offset=offset)
    with torch.no_grad():
        score, distances = head(torch.from_numpy(test))
    np.testing.assert_allclose(distances.numpy(), detector.distances(test), rtol=1e-5)
    np.testing.assert_allclose(score.numpy(), detector.score(test), rtol=1e-5)
    assert head.project.weight.shape == (2 * 20, 20) and head.class_names == ["qcd", "wz"]


def test_head_rejects_other_combines_and_unfitted_detectors():
    reps, labels = toy_reps()
    with pytest.raises(ConfigError, match="min"):
        MahalanobisHead(MahalanobisDetector(combine="softmin").fit(reps, labels))
    with pytest.raises(NurdadError, match="not fitted"):
        MahalanobisHead(MahalanobisDetector())


def test_export_errors_are_one_clear_line(tmp_path):
    with pytest.raises(NurdadError, match=r'pip install -e "\.\[export\]"'):
        require("nurdad_no_such_package", "testing")
    with pytest.raises(ConfigError, match="ap_fixed<W,I>"):
        fixed_point_bits("float32")
    with pytest.raises(ConfigError, match="precisions"):
        ExportConfig(precisions=("ap_fixed<8,12>",))
    assert fixed_point_bits("ap_fixed<18, 8, AP_RND, AP_SAT>") == (18, 8)
    ae = TrainedRun(tmp_path, TrainConfig(model="ae"), ("qcd",), None, None, (50, 50), [], 0)
    with pytest.raises(NurdadError, match="'ae' run"):
        check_exportable(ae)
    assert main(["export", str(tmp_path)]) == 2  # no format chosen


@pytest.mark.slow  # ~7 s: the torch.export-based exporter's first run
def test_onnx_matches_torch_within_1e_5(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from nurdad.export import onnx as onnx_export

    run = toy_run(tmp_path)
    record = onnx_export.export(run, tmp_path, ExportConfig(check_jets=8))
    assert record["check"]["max_rel_diff"] < 1e-5
    import onnxruntime

    images = toy_images(24, "two", np.random.default_rng(2))[:, None]  # another batch size
    session = onnxruntime.InferenceSession(str(tmp_path / record["file"]))
    score, distances = session.run(["score", "distances"], {"images": images})
    with torch.no_grad():
        want_score, want_distances = DetectorModel(run.model, run.detector)(torch.from_numpy(images))
    np.testing.assert_allclose(score, want_score.numpy(), rtol=1e-5)
    np.testing.assert_allclose(distances, want_distances.numpy(), rtol=1e-5)


# ------------------------------------------------------------------------------------ on a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for one epoch on toy jets, and its data file.

    lambda = 0: one DisCo epoch on 320 toy jets leaves a nearly singular within-class covariance
    whose 16-bit emulation is off by ~30% in the score; a real DisCo run (paper size, lambda 0.3)
    exports at per-layer ap_fixed<16,6> with a median score error of 0.002 (RESULTS.md)."""
    root = tmp_path_factory.mktemp("export")
    data = toy_jet_file(root / "toy.h5", {"qcd": 160, "wz": 160, "top": 60})
    config = TrainConfig(epochs=1, batch_size=64, fresh_critic_epochs=2,
                         nurd=NurdConfig(lambda_penalty=0.0))
    train(config, data, root / "run", show_progress=False)
    return root / "run", data


@pytest.mark.slow
def test_detector_model_matches_scoring_and_onnx_cli(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run_dir, data = trained
    run = load_run(run_dir)
    scores = score_dataset(run, open_dataset(data))
    images = open_dataset(data).read_images(np.arange(len(scores["nurd_md"])))
    with torch.no_grad():
        score, distances = DetectorModel(run.model, run.detector)(torch.from_numpy(images))
    np.testing.assert_allclose(score.numpy(), scores["nurd_md"], rtol=2e-4)
    np.testing.assert_allclose(distances[:, 1].numpy(), scores["d_wz"], rtol=2e-4)

    assert main(["-q", "export", str(run_dir), "--onnx", "-o", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["onnx"]["check"]["max_rel_diff"] < 2e-4 and record["classes"] == ["qcd", "wz"]
    assert (tmp_path / "nurdad_detector.onnx").stat().st_size > 10_000


def test_firmware_model_equals_detector_model(tmp_path):
    pytest.importorskip("hls4ml")
    from nurdad.export.hls import FirmwareModel

    run = toy_run(tmp_path)
    model = DetectorModel(run.model, run.detector)
    images = torch.from_numpy(toy_images(16, "three", np.random.default_rng(3)))[:, None]
    with torch.no_grad():
        want, _ = model(images)
        got = FirmwareModel(model)(model.encoder.transform(images))  # transform = preprocessing
    assert got.shape == (16, 1)
    np.testing.assert_allclose(got[:, 0].numpy(), want.numpy(), rtol=1e-5)


def test_layer_precisions_widen_only_what_overflows():
    from nurdad.export.hls import layer_precisions

    ranges = {"x": {"result": 1.0},
              "body_3": {"weight": 0.2, "bias": 0.1, "result": 0.3, "input": 0.9, "row_abs_sum": 2.5},
              "project_0": {"weight": 3000.0, "bias": 40.0, "result": 9.0, "input": 0.3,
                            "row_abs_sum": 5000.0}}
    uniform = layer_precisions(ranges, "ap_fixed<16,6>", per_layer=False)
    # L (~2^12) and its bias (~2^6) overflow 6 integer bits; body_3's outputs fit, but not every
    # sum of inputs in their default type (+-32) times its weights (2^8): only its accumulator grows
    assert set(uniform) == {"body_3", "project_0"}
    assert uniform["body_3"] == {"accum": "ap_fixed<22,8,AP_RND,AP_SAT>"}
    # the accumulator holds any sum of inputs in their type (+-32) times 5000 (+ bias): 2^18,
    # with the output's 10 fraction bits and 4 guard bits
    assert uniform["project_0"] == {"weight": "ap_fixed<16,13,AP_RND,AP_SAT>",
                                    "bias": "ap_fixed<16,7,AP_RND,AP_SAT>",
                                    "accum": "ap_fixed<33,19,AP_RND,AP_SAT>"}
    per_layer = layer_precisions(ranges, "ap_fixed<16,6>", per_layer=True)
    assert per_layer["x"] == {"result": "ap_fixed<16,3,AP_RND,AP_SAT>",
                              "accum": "ap_fixed<16,3,AP_RND,AP_SAT>"}
    # 0.3 needs 0 integer bits + 1 headroom bit; inputs < 2 times 2.5 need 4 accumulator bits
    assert per_layer["body_3"] == {"weight": "ap_fixed<16,-1,AP_RND,AP_SAT>",
                                   "bias": "ap_fixed<16,-2,AP_RND,AP_SAT>",
                                   "result": "ap_fixed<16,1,AP_RND,AP_SAT>",
                                   "accum": "ap_fixed<23,4,AP_RND,AP_SAT>"}


@pytest.mark.slow
def test_hls4ml_emulation_tracks_float(trained, tmp_path):
    pytest.importorskip("hls4ml")
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("g++ not found: hls4ml compiles its C++ emulation with it")
    run_dir, data = trained
    config = ExportConfig(precisions=("ap_fixed<16,6>",), max_jets_per_process=20, data=(str(data),))
    record = export_run(run_dir, ["hls4ml"], tmp_path, config)["hls4ml"]
    assert record["data"]["jets"] == {"qcd": 20, "top": 20, "wz": 20}
    assert record["data"]["rows"] == "test split + all anomalies"
    chosen = next(t for t in record["trials"]
                  if (t["precision"], t["per_layer"]) == (record["chosen"]["precision"],
                                                          record["chosen"]["per_layer"]))
    assert record["chosen"]["meets_target"]
    assert chosen["max_auroc_drop"] <= 0.01 and chosen["agreement"]["median_rel_err"] < 0.05
    assert chosen["agreement"]["spearman"] > 0.95
    project = tmp_path / chosen["project"]
    assert (project / "firmware" / "nurdad_detector.cpp").is_file()
    assert json.loads((tmp_path / "export.json").read_text())["hls4ml"]["chosen"] == record["chosen"]
    assert "synthesis" in record["not_measured"] and "sqrt" in record["preprocessing"]
    assert Path(project).is_relative_to(tmp_path)
