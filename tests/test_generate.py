"""Sharded generation with real Pythia8 + FastJet: resume, batch-farm shards, merge, bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest

from nurdad.data import open_dataset
from nurdad.errors import ConfigError
from nurdad.generate import GenerateConfig, generate, parse_shard_selector, plan_shards, shard_dir

pytestmark = pytest.mark.simulation
SMALL = GenerateConfig(jets={"qcd": 16, "wz": 8}, jets_per_shard=8, seed=11)


def columns(path):
    data = open_dataset(path)
    return {name: data.column(name) for name in ("process", "mass", "seed", "event_index")}, \
        data.read_images(np.arange(len(data)))


def test_resume_regenerates_only_missing_shards(tmp_path):
    out = tmp_path / "jets.h5"
    generate(SMALL, out, keep_shards=True, show_progress=False)
    reference, images = columns(out)
    assert list(reference["process"]) == ["qcd"] * 16 + ["wz"] * 8
    shards = sorted(shard_dir(out).glob("*.h5"))
    assert len(shards) == 3
    kept = {p: p.stat().st_mtime_ns for p in shards[1:]}
    shards[0].unlink()
    out.unlink()
    generate(SMALL, out, keep_shards=True, show_progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished shards were not redone
    again, images_again = columns(out)
    for name in reference:
        np.testing.assert_array_equal(reference[name], again[name])
    np.testing.assert_array_equal(images, images_again)  # same seeds, same jets
    generate(SMALL, out, show_progress=False)  # complete: nothing to do, shards cleaned up afterwards
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*tmp*"))


def test_batch_farm_shards_merge_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "farm.h5"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    base = [sys.executable, "-m", "nurdad.cli", "-q", "generate", "--jets", "qcd=16", "--jets", "wz=8",
            "--jets-per-shard", "8", "--seed", "11", "-o", str(out)]
    for part in ("0/2", "1/2"):  # separate processes, as on separate batch nodes
        subprocess.run([*base, "--shard", part], check=True, env=env, capture_output=True)
    assert not out.exists()
    subprocess.run([sys.executable, "-m", "nurdad.cli", "-q", "data", "merge", str(shard_dir(out)),
                    "-o", str(out)], check=True, env=env, capture_output=True)
    merged, _ = columns(out)
    assert len(merged["mass"]) == 24
    keys = set(zip(merged["process"], merged["seed"], merged["event_index"], strict=True))
    assert len(keys) == 24  # no duplicates
    planned = {(t.process, t.seed) for t in plan_shards(SMALL, out)}
    assert set(zip(merged["process"], merged["seed"], strict=True)) == planned  # nothing lost
    dup = subprocess.run([sys.executable, "-m", "nurdad.cli", "data", "merge", str(shard_dir(out)),
                          str(shard_dir(out) / "qcd-00000.h5"), "-o", str(tmp_path / "dup.h5")],
                         env=env, capture_output=True, text=True)
    assert dup.returncode == 2 and "duplicate" in dup.stderr and "Traceback" not in dup.stderr


def test_bad_generation_input_gives_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown process 'gluino'"):
        GenerateConfig(jets={"gluino": 5})
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard_selector("3/2")
    result = subprocess.run([sys.executable, "-m", "nurdad.cli", "generate", "--jets", "qcd=5", "--pt-min",
                             "800", "-o", str(tmp_path / "x.h5")], capture_output=True, text=True)
    assert result.returncode == 2 and "pt_m" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
