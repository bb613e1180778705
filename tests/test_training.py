"""The training loop on toy jets: artifacts, resume, reproducibility, run-dir safety."""

import json

import numpy as np
import pytest
import torch

from helpers import toy_jet_file
from nurdad.data import open_dataset
from nurdad.errors import ConfigError, RunDirError, SchemaError
from nurdad.nurd.objective import NurdConfig
from nurdad.scoring import load_run, score_dataset
from nurdad.training import TrainConfig, make_split, train

TINY = dict(epochs=2, batch_size=64, fresh_critic_epochs=2,
            nurd=NurdConfig(lambda_penalty=1.0, critic_warmup_steps=5))
ARTIFACTS = ["config.json", "provenance.json", "split.npz", "weights.png", "checkpoint.pt", "history.csv",
             "model.pt", "detector.json", "summary.json"]


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return toy_jet_file(tmp_path_factory.mktemp("data") / "toy.h5", {"qcd": 200, "wz": 200, "top": 60})


def test_nurd_run_writes_every_artifact_and_scores(toy_file, tmp_path):
    summary = train(TrainConfig(**TINY), toy_file, tmp_path / "run", show_progress=False)
    for name in ARTIFACTS:
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / ".lock").exists()
    assert summary["parameters"] > 1000 and summary["macs_per_jet"] > summary["parameters"]
    assert {"info_estimate", "critic_auc"} <= set(summary["fresh_critic"])
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["seed"] == 0 and "torch" in provenance["versions"] and provenance["git_commit"]
    run = load_run(tmp_path / "run")
    scores = score_dataset(run, open_dataset(toy_file))
    assert scores["nurd_md"].shape == (460,) and np.isfinite(scores["nurd_md"]).all()
    assert set(scores) >= {"nurd_ml", "d_qcd", "d_wz", "representation"}
    # a jet's score does not depend on which other jets are scored with it
    some = np.array([400, 3, 250])
    np.testing.assert_allclose(score_dataset(run, open_dataset(toy_file), some)["nurd_md"],
                               scores["nurd_md"][some], rtol=1e-4)  # float32 conv noise


def test_critic_dependence_trains_and_differs_from_disco(toy_file, tmp_path):
    critic = TrainConfig(**{**TINY, "nurd": NurdConfig(dependence="critic", critic_warmup_steps=5)})
    summary = train(critic, toy_file, tmp_path / "critic", show_progress=False)
    disco = train(TrainConfig(**TINY), toy_file, tmp_path / "disco", show_progress=False)
    for s in (summary, disco):
        assert s["final"]["train_info"] != 0 and np.isfinite(s["final"]["val_info"])
    assert summary["final"]["train_loss"] != disco["final"]["train_loss"]


def test_autoencoder_baseline_trains_on_qcd_only(toy_file, tmp_path):
    summary = train(TrainConfig(model="ae", epochs=1, batch_size=64), toy_file, tmp_path / "ae",
                    show_progress=False)
    assert summary["model"] == "ae" and not (tmp_path / "ae" / "detector.json").exists()
    scores = score_dataset(load_run(tmp_path / "ae"), open_dataset(toy_file))
    assert scores["ae_mse"].shape == (460,) and (scores["ae_mse"] > 0).all()


def _comparable(history_csv):
    """history.csv without the wall-clock columns."""
    lines = [line.split(",") for line in history_csv.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name not in ("seconds", "jets_per_second")]
    return [[row[i] for i in keep] for row in lines]


def test_resume_equals_uninterrupted_and_seed_reproduces(toy_file, tmp_path, monkeypatch):
    config = TrainConfig(**{**TINY, "epochs": 3})
    train(config, toy_file, tmp_path / "full", show_progress=False)
    train(config, toy_file, tmp_path / "again", show_progress=False)
    # interrupt during the second epoch, then resume
    import nurdad.training as training

    real_epoch, calls = training._run_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, toy_file, tmp_path / "cut", show_progress=False)
    monkeypatch.setattr(training, "_run_epoch", real_epoch)
    assert not (tmp_path / "cut" / "model.pt").exists()
    train(config, toy_file, tmp_path / "cut", resume=True, show_progress=False)
    full = torch.load(tmp_path / "full" / "model.pt")["state"]
    for other in ("again", "cut"):
        state = torch.load(tmp_path / other / "model.pt")["state"]
        for key in full:
            assert torch.equal(full[key], state[key]), (other, key)
        assert _comparable(tmp_path / other / "history.csv") == \
            _comparable(tmp_path / "full" / "history.csv")
    detector = (tmp_path / "full" / "detector.json").read_text()
    assert detector == (tmp_path / "cut" / "detector.json").read_text()


def test_run_dir_is_not_overwritten(toy_file, tmp_path):
    train(TrainConfig(**{**TINY, "epochs": 1}), toy_file, tmp_path / "run", show_progress=False)
    with pytest.raises(RunDirError, match="already holds a run"):
        train(TrainConfig(**{**TINY, "epochs": 1}), toy_file, tmp_path / "run", show_progress=False)
    with pytest.raises(RunDirError, match="different settings"):
        train(TrainConfig(**{**TINY, "epochs": 1, "lr": 0.01}), toy_file, tmp_path / "run", resume=True,
              show_progress=False)


def test_bad_configuration_and_data(toy_file, tmp_path):
    with pytest.raises(ConfigError, match="lambda_penalty"):
        NurdConfig(lambda_penalty=-1)
    with pytest.raises(ConfigError, match="nurd.dependence"):
        NurdConfig(dependence="adversary")
    with pytest.raises(ConfigError, match="at least 2 background classes"):
        TrainConfig(backgrounds=("qcd",))
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(SchemaError, match="no jets of process 'hbb'"):
        train(TrainConfig(**{**TINY, "backgrounds": ("qcd", "hbb")}), toy_file, tmp_path / "r1",
              show_progress=False)
    with pytest.raises(SchemaError, match="need at least train.min_class_jets"):
        train(TrainConfig(**{**TINY, "min_class_jets": 1000}), toy_file, tmp_path / "r2", show_progress=False)


def test_split_is_stratified_and_seeded():
    process = np.array(["qcd"] * 100 + ["wz"] * 60)
    a = make_split(process, TrainConfig(seed=1))
    assert np.array_equal(a, make_split(process, TrainConfig(seed=1)))
    assert not np.array_equal(a, make_split(process, TrainConfig(seed=2)))
    assert (a[:100] == 2).sum() == 25 and (a[100:] == 2).sum() == 15
    assert (a[:100] == 1).sum() == 15 and (a[100:] == 1).sum() == 9
