"""DDP under torchrun (2 CPU processes, gloo) matches one process with the same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import toy_jet_file

pytestmark = pytest.mark.slow
TOML = """
[train]
epochs = 2
batch_size = 64
fresh_critic_epochs = 2
[train.nurd]
lambda_penalty = {lam}
critic_warmup_steps = 5
"""


def _train(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_two_ranks_match_one_process(tmp_path, lam):
    toy_jet_file(tmp_path / "toy.h5", {"qcd": 200, "wz": 200, "top": 40})
    (tmp_path / "tiny.toml").write_text(TOML.format(lam=lam))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["train", "--data", "toy.h5", "--config", "tiny.toml", "-q"]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = _train([torchrun, "--standalone", "--nproc_per_node=2", "-m", "nurdad.cli", *common,
                  "--out", "two"], tmp_path, env)
    _train([sys.executable, "-m", "nurdad.cli", *common, "--out", "one"], tmp_path, env)
    assert two.stdout.count("two:") == 1  # only rank 0 reports
    one_state = torch.load(tmp_path / "one" / "model.pt")["state"]
    two_state = torch.load(tmp_path / "two" / "model.pt")["state"]
    worst = max((one_state[k] - two_state[k]).abs().max().item() for k in one_state)
    if lam == 0:
        # same global batches, gradients averaged: equal up to float reduction order
        assert worst < 1e-4
    else:
        # the dependence penalty (distance correlation) is computed on each rank's half-batch, so the
        # runs differ by that estimate, not by the method; both train to similar weights
        assert worst < 0.5
