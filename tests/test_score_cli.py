"""`nurdad score`: per-jet scores of any nurdad file with a trained run, written to HDF5."""

import h5py
import numpy as np
import pytest

from helpers import toy_jet_file
from nurdad import cli, scoring
from nurdad.data import open_dataset
from nurdad.metrics import auroc
from nurdad.nurd.objective import NurdConfig
from nurdad.scoring import load_run, score_dataset
from nurdad.training import TrainConfig, train

TINY = dict(epochs=1, batch_size=64, fresh_critic_epochs=2, nurd=NurdConfig(critic_warmup_steps=5))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny NuRD run and an autoencoder run on one toy file."""
    tmp = tmp_path_factory.mktemp("score")
    data = toy_jet_file(tmp / "toy.h5", {"qcd": 120, "wz": 120, "top": 30})
    train(TrainConfig(**TINY), data, tmp / "nurd", show_progress=False)
    train(TrainConfig(model="ae", epochs=1, batch_size=64), data, tmp / "ae", show_progress=False)
    return tmp, data


def test_score_writes_every_score_and_matches_score_dataset(trained, tmp_path, capsys, monkeypatch):
    tmp, data = trained
    monkeypatch.setattr(scoring, "SCORE_CHUNK_JETS", 100)  # 270 jets: three chunks
    out = tmp_path / "scores.h5"
    assert cli.main(["score", str(tmp / "nurd"), str(data), "-o", str(out), "--batch-size", "50", "-q"]) == 0
    reference = score_dataset(load_run(tmp / "nurd"), open_dataset(data))
    with h5py.File(out, "r") as f:
        assert set(f) == {"nurd_md", "nurd_ml", "d_qcd", "d_wz", "representation", "process", "mass"}
        assert f["representation"].shape == (270, reference["representation"].shape[1])
        for key in ("nurd_md", "nurd_ml", "d_qcd", "d_wz"):
            assert f[key].shape == (270,)
            np.testing.assert_allclose(f[key][()], reference[key], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(f["representation"][()], reference["representation"], rtol=1e-4,
                                   atol=1e-6)
        process = f["process"][()].astype(str)
        np.testing.assert_array_equal(process, open_dataset(data).column("process"))
        np.testing.assert_array_equal(f["mass"][()], open_dataset(data).column("mass"))
        assert f.attrs["model"] == "nurd"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(out) and len(lines) == 2
    background = np.isin(process, ["qcd", "wz"])
    expected = auroc(reference["nurd_md"][background], reference["nurd_md"][process == "top"])
    assert lines[1].startswith("AUROC top (30 jets) vs qcd+wz (240 jets): ")
    assert f"nurd_md {expected:.4f}" in lines[1] and "nurd_ml " in lines[1]


def test_score_autoencoder_run_writes_ae_mse(trained, tmp_path):
    tmp, data = trained
    out = tmp_path / "ae.h5"
    assert cli.main(["score", str(tmp / "ae"), str(data), "-o", str(out), "-q"]) == 0
    with h5py.File(out, "r") as f:
        assert {"ae_mse", "process", "mass"} == set(f)
        np.testing.assert_allclose(f["ae_mse"][()],
                                   score_dataset(load_run(tmp / "ae"), open_dataset(data))["ae_mse"],
                                   rtol=1e-4)


def test_score_bad_inputs_give_one_line_and_exit_2(trained, tmp_path, capsys):
    tmp, _ = trained
    small = toy_jet_file(tmp_path / "small.h5", {"qcd": 20, "top": 5}, size=40)
    out = tmp_path / "scores.h5"
    assert cli.main(["score", str(tmp / "nurd"), str(small), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(40, 40)" in err[0] and "(50, 50)" in err[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["small.h5"]
    assert cli.main(["score", str(tmp_path / "no_run"), str(small), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_run: no such run directory" in err[0]
