"""HDF5 schema: round trip, validation errors, merging, streaming batches (toy jets)."""

import h5py
import numpy as np
import pytest

from helpers import toy_jet_file
from nurdad.data import COLUMNS, JetFile, dataset_info, merge_files, open_dataset, write_jets
from nurdad.data.stream import JetBatches
from nurdad.errors import SchemaError


def test_round_trip(tmp_path):
    path = toy_jet_file(tmp_path / "toy.h5", {"qcd": 20, "wz": 10})
    jets = JetFile(path)
    assert len(jets) == 30 and jets.image_shape == (50, 50)
    assert set(COLUMNS) <= set(jets.columns)
    process = jets.column("process")
    assert list(process[:20]) == ["qcd"] * 20 and list(process[20:]) == ["wz"] * 10
    images = jets.read_images(slice(0, 30))
    np.testing.assert_allclose(images.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert jets.config == {"toy": True, "seed": 0}
    assert np.isnan(jets.column("tau21")).all()  # unknown -> NaN default
    with h5py.File(path) as f:
        assert f["images"].compression == "gzip"
        assert "versions" in f.attrs["provenance"]
    jets.validate()


def test_info_counts_and_quantiles(tmp_path):
    info = dataset_info(open_dataset(toy_jet_file(tmp_path / "toy.h5")))
    assert info["processes"]["qcd"]["jets"] == 300
    q = info["processes"]["top"]["mass_quantiles_gev"]
    assert 150 < q["q50"] < 190 and q["q10"] < q["q50"] < q["q90"]


def test_merge_concatenates_and_refuses_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):
        n = 5 + k
        columns = {"process": np.full(n, "qcd", dtype="S16"), "mass": rng.uniform(10, 100, n),
                   "seed": np.full(n, 100 + k), "event_index": np.arange(n)}
        paths.append(write_jets(tmp_path / f"s{k}.h5", rng.random((n, 8, 8), dtype=np.float32), columns))
    merged = merge_files(paths, tmp_path / "all.h5")
    data = open_dataset(merged)
    assert len(data) == 5 + 6 + 7
    np.testing.assert_array_equal(data.column("seed"), np.repeat([100, 101, 102], [5, 6, 7]))
    every = np.arange(18)
    np.testing.assert_array_equal(open_dataset(paths).read_images(every), data.read_images(every))
    with pytest.raises(SchemaError, match="duplicate"):
        merge_files([paths[0], paths[1], paths[0]], tmp_path / "dup.h5")
    assert not (tmp_path / "dup.h5").exists()


def test_validation_errors(tmp_path):
    with pytest.raises(SchemaError, match="no such file"):
        JetFile(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SchemaError, match="not an HDF5 file"):
        JetFile(tmp_path / "text.h5")
    with h5py.File(tmp_path / "nomass.h5", "w") as f:
        f["images"] = np.zeros((2, 4, 4), dtype=np.float32)
        f["process"] = np.array([b"qcd", b"qcd"])
    with pytest.raises(SchemaError, match="missing dataset 'mass'"):
        JetFile(tmp_path / "nomass.h5")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["images"] = np.zeros((2, 4, 5), dtype=np.float32)
        f["process"] = np.array([b"qcd", b"qcd"])
        f["mass"] = np.zeros(2)
    with pytest.raises(SchemaError, match="expected \\(N, H, W\\), H == W"):
        JetFile(tmp_path / "shape.h5")
    bad = np.ones((3, 4, 4), dtype=np.float32)
    bad[1, 2, 2] = np.nan
    columns = {"process": np.full(3, "qcd", dtype="S16"), "mass": np.ones(3)}
    path = write_jets(tmp_path / "nan.h5", bad, columns)
    with pytest.raises(SchemaError, match="NaN/inf pixels \\(first at row 1\\)"):
        JetFile(path).validate()
    with pytest.raises(SchemaError, match="mass.*has 2 rows"):
        write_jets(tmp_path / "rows.h5", bad, {"mass": np.ones(2)})


def test_batches_cover_rows_once_and_stream_like_memory(tmp_path):
    data = open_dataset(toy_jet_file(tmp_path / "toy.h5", {"qcd": 50, "wz": 37}))
    rows = np.arange(3, 80)
    labels = np.arange(len(rows))
    for in_memory in (1e12, 0):
        batches = JetBatches(data, rows, {"labels": labels}, batch_size=16, shuffle=True, seed=1,
                             in_memory_bytes=in_memory, block_rows=10, buffer_blocks=2)
        seen = [b for b in batches.epoch(0)]
        got = np.concatenate([b["rows"].numpy() for b in seen])
        assert sorted(got) == list(rows)  # every row exactly once
        for b in seen:  # per-row arrays travel with their rows
            np.testing.assert_array_equal(b["labels"].numpy(), b["rows"].numpy() - 3)
            np.testing.assert_array_equal(b["images"][:, 0].numpy(), data.read_images(b["rows"].numpy()))
        again = np.concatenate([b["rows"].numpy() for b in batches.epoch(0)])
        np.testing.assert_array_equal(got, again)  # order is a function of (seed, epoch)
        other = np.concatenate([b["rows"].numpy() for b in batches.epoch(1)])
        assert not np.array_equal(got, other)


def test_rank_slices_partition_the_global_batch(tmp_path):
    data = open_dataset(toy_jet_file(tmp_path / "toy.h5", {"qcd": 40, "wz": 40}))
    rows = np.arange(80)
    per_rank = [
        [b["rows"].numpy() for b in JetBatches(data, rows, {}, 16, True, seed=3, rank=r, world_size=2)
         .epoch(0)] for r in range(2)
    ]
    single = [b["rows"].numpy() for b in JetBatches(data, rows, {}, 16, True, seed=3).epoch(0)]
    for whole, a, b in zip(single, *per_rank, strict=True):
        assert sorted(np.concatenate([a, b])) == sorted(whole)
