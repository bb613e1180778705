"""Importers of public jet datasets: toy files written with h5py in each published layout."""

import h5py
import numpy as np
import pytest

from nurdad import cli
from nurdad.data import open_dataset
from nurdad.errors import ConfigError, SchemaError
from nurdad.images import jet_images
from nurdad.importers import IMPORTERS, import_dataset

HLS4ML_PARTICLE_NAMES = (  # 16 columns, then a 17th name without a column, as in the published files
    "j1_px", "j1_py", "j1_pz", "j1_e", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta", "j1_etarel", "j1_etarot",
    "j1_phi", "j1_phirel", "j1_phirot", "j1_deltaR", "j1_costheta", "j1_costhetarel", "j1_pdgid",
)
HLS4ML_FLAGS = ("j_g", "j_q", "j_w", "j_z", "j_t", "j_undef")
HLS4ML_JET_NAMES = ("j_ptfrac", "j_pt", "j_eta", "j_mass", *(f"j_obs{i}" for i in range(49)), *HLS4ML_FLAGS)
TOY_MASS = 123.0  # the j_mass / jet_features mass the toy files declare, unlike their constituents'


def toy_constituents(n: int, m: int, rng, eta0=0.4, phi0=2.9) -> np.ndarray:
    """(n, m, 3) [pt, eta, phi] around an axis, pt-descending, the last quarter padding (pt = 0)."""
    pt = np.sort(rng.exponential(40.0, (n, m)), axis=1)[:, ::-1] + 1.0
    eta = eta0 + rng.normal(0, 0.25, (n, m))
    phi = phi0 + rng.normal(0, 0.25, (n, m))  # crosses +pi: exercises the wrap
    pad = np.arange(m) >= 3 * m // 4
    return np.stack([np.where(pad, 0.0, pt), np.where(pad, 0.0, eta), np.where(pad, 0.0, phi)], axis=-1)


def hand_mass(constituents: np.ndarray) -> float:
    """Invariant mass of one jet's massless (pt, eta, phi) constituents, summed by hand."""
    pt, eta, phi = constituents.T
    e, px, py, pz = (pt * np.cosh(eta)).sum(), (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum(), \
        (pt * np.sinh(eta)).sum()
    return float(np.sqrt(e**2 - px**2 - py**2 - pz**2))


# ------------------------------------------------------------------------------------------- writers
def toy_hls4ml_file(path, n=10, m=16, seed=0):
    rng = np.random.default_rng(seed)
    c = toy_constituents(n, m, rng)
    pt, eta, phi = c[..., 0], c[..., 1], c[..., 2]
    features = np.zeros((n, m, 16))
    names = HLS4ML_PARTICLE_NAMES[:16]
    for name, values in (("j1_pt", pt), ("j1_eta", eta), ("j1_phi", phi), ("j1_px", pt * np.cos(phi)),
                         ("j1_py", pt * np.sin(phi)), ("j1_etarel", np.where(pt > 0, eta - 0.4, 0)),
                         ("j1_phirel", np.where(pt > 0, phi - 2.9, 0))):
        features[..., names.index(name)] = values
    jets = np.zeros((n, len(HLS4ML_JET_NAMES)))
    jets[:, 1], jets[:, 2], jets[:, 3] = 1000.0, 0.4, TOY_MASS
    jets[np.arange(n), 53 + np.arange(n) % 5] = 1.0  # g, q, w, z, t, g, ...
    with h5py.File(path, "w") as f:
        f["jetConstituentList"] = features
        f["jets"] = jets
        f["particleFeatureNames"] = np.array([s.encode() for s in HLS4ML_PARTICLE_NAMES])
        f["jetFeatureNames"] = np.array([s.encode() for s in HLS4ML_JET_NAMES])
        f["jetImage"] = np.zeros((n, 4, 4))
    return path, c


def toy_jetnet_file(path, n=6, m=30, seed=0):
    """JetNet layout; returns the constituents in absolute (pt, eta, phi) with jet phi = 0."""
    rng = np.random.default_rng(seed)
    c = toy_constituents(n, m, rng, eta0=-0.7, phi0=0.0)
    jet_pt, jet_eta = rng.uniform(900, 1100, n), -0.7
    real = c[..., 0] > 0
    particles = np.zeros((n, m, 4), dtype=np.float32)
    particles[..., 0] = np.where(real, c[..., 1] - jet_eta, 0)
    particles[..., 1] = np.where(real, c[..., 2], 0)
    particles[..., 2] = c[..., 0] / jet_pt[:, None]
    particles[..., 3] = real
    jets = np.stack([jet_pt, np.full(n, jet_eta), np.full(n, TOY_MASS), real.sum(1) + 5.0], 1)
    with h5py.File(path, "w") as f:
        f["particle_features"] = particles
        f["jet_features"] = jets.astype(np.float32)
    stored = particles.astype(np.float64)
    pt = stored[..., 2] * jets.astype(np.float32).astype(np.float64)[:, :1]
    absolute = np.stack([pt, np.where(real, stored[..., 0] + np.float32(jet_eta), 0), stored[..., 1]], -1)
    return path, absolute


def toy_toptagging_file(path, n=10, m=12, seed=0, fmt="fixed"):
    """A pandas fixed-format frame as DataFrame.to_hdf(key='table') writes it: float block + int block."""
    rng = np.random.default_rng(seed)
    c = toy_constituents(n, m, rng, eta0=1.1, phi0=-3.0)
    pt, eta, phi = c[..., 0], c[..., 1], c[..., 2]
    p4 = {"E": pt * np.cosh(eta), "PX": pt * np.cos(phi), "PY": pt * np.sin(phi), "PZ": pt * np.sinh(eta)}
    float_items = [f"{p}_{i}" for i in range(m) for p in ("E", "PX", "PY", "PZ")]
    float_items += ["truthE", "truthPX", "truthPY", "truthPZ", "ttv"]
    values = np.zeros((n, len(float_items)), dtype=np.float32)
    for k, name in enumerate(float_items[: 4 * m]):
        p, i = name.split("_")
        values[:, k] = p4[p][:, int(i)]
    label = (np.arange(n) % 2).astype(np.int64)[:, None]
    with h5py.File(path, "w") as f:
        g = f.create_group("table")
        g.attrs.update(pandas_type=b"frame", pandas_version=b"0.15.2", ndim=2, nblocks=2)
        g["axis0"] = np.array([s.encode() for s in float_items + ["is_signal_new"]])
        g["axis1"] = np.arange(n)
        g["block0_items"] = np.array([s.encode() for s in float_items])
        g["block0_values"] = values
        g["block0_values"].attrs["transposed"] = True
        g["block1_items"] = np.array([b"is_signal_new"])
        g["block1_values"] = label
        if fmt == "table":
            g["table"] = np.zeros(n, dtype=[("index", "i8"), ("values_block_0", "f4", (3,))])
    stored = values.astype(np.float64)
    e, px, py, pz = (stored[:, [float_items.index(f"{p}_{i}") for i in range(m)]]
                     for p in ("E", "PX", "PY", "PZ"))
    return path, (e, px, py, pz)


def edit(path, dataset, index, value):
    with h5py.File(path, "r+") as f:
        data = f[dataset][()]
        data[index] = value
        f[dataset][...] = data


# --------------------------------------------------------------------------------------------- tests
def test_registry_lists_the_three_formats():
    assert set(IMPORTERS) == {"hls4ml", "jetnet", "toptagging"}
    with pytest.raises(ConfigError, match="expected one of"):
        import_dataset("nope", "x", "y")


def test_hls4ml_import(tmp_path):
    src, c = toy_hls4ml_file(tmp_path / "jetImage_7_150p_0_10.h5")
    info = import_dataset("hls4ml", src, tmp_path / "out.h5")
    assert info["jets"] == 10 and info["processes"] == {"qcd": 4, "top": 2, "wz": 4}
    ds = open_dataset(tmp_path / "out.h5")
    images = ds.read_images(np.arange(10))
    assert images.shape == (10, 50, 50)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert ds.column("process")[:5].tolist() == ["qcd", "qcd", "wz", "wz", "top"]
    np.testing.assert_allclose(ds.column("mass"), TOY_MASS)  # the dataset's j_mass wins by default
    np.testing.assert_array_equal(ds.column("event_index"), np.arange(10))
    assert (ds.column("seed") == -1).all() and np.isnan(ds.column("tau21")).all()
    assert ds.column("n_constituents")[0] == 12 and ds.column("truth_matched").all()
    # recomputed from the constituents: the hand four-vector mass, phi from the absolute j1_phi
    import_dataset("hls4ml", src, tmp_path / "four.h5", kinematics="constituents")
    four = open_dataset(tmp_path / "four.h5")
    assert four.column("mass")[0] == pytest.approx(hand_mass(c[0]), rel=1e-5)
    assert abs(abs(four.column("phi")[0]) - np.pi) < 0.3  # the jet sits near phi = +-pi
    expected = jet_images(c[:1], four.column("eta")[:1], four.column("phi")[:1])
    np.testing.assert_allclose(four.read_images(np.array([0])), expected, atol=1e-6)


def test_hls4ml_malformed_rows_give_one_clear_line(tmp_path):
    src, _ = toy_hls4ml_file(tmp_path / "toy.h5")
    names = list(HLS4ML_PARTICLE_NAMES)
    edit(src, "jetConstituentList", (3, 2, names.index("j1_eta")), np.nan)
    with pytest.raises(SchemaError, match=r"toy.h5: row 3: j1_eta of constituent 2 = nan; expected a finite"):
        import_dataset("hls4ml", src, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists() and list(tmp_path.iterdir()) == [src]
    src, _ = toy_hls4ml_file(tmp_path / "toy.h5")
    edit(src, "jetConstituentList", (8, 0, names.index("j1_pt")), -5.0)
    with pytest.raises(SchemaError, match=r"row 8: j1_pt of constituent 0 = -5; expected a finite .* >= 0"):
        import_dataset("hls4ml", src, tmp_path / "out.h5", chunk_rows=3)  # row 8 is in the third chunk
    src, _ = toy_hls4ml_file(tmp_path / "toy.h5")
    edit(src, "jets", (4, 53), 1.0)  # a top jet also flagged as gluon
    with pytest.raises(SchemaError, match=r"row 4: class flags j_g, j_q, j_w, j_z, j_t = \[1.0, 0.0"):
        import_dataset("hls4ml", src, tmp_path / "out.h5")
    with h5py.File(src, "r+") as f:
        del f["particleFeatureNames"]
        f["particleFeatureNames"] = np.array([n.replace("j1_phi", "j1_phi_x").encode() for n in names])
    with pytest.raises(SchemaError, match=r"particleFeatureNames has no 'j1_phi'"):
        import_dataset("hls4ml", src, tmp_path / "out.h5")
    with h5py.File(src, "r+") as f:
        del f["jets"]
    with pytest.raises(SchemaError, match=r"toy.h5: missing dataset 'jets'"):
        import_dataset("hls4ml", src, tmp_path / "out.h5")


def test_jetnet_directory_import_merges_files(tmp_path):
    (tmp_path / "jetnet").mkdir()
    _, top = toy_jetnet_file(tmp_path / "jetnet" / "t.hdf5", n=6, seed=1)
    toy_jetnet_file(tmp_path / "jetnet" / "q.hdf5", n=5, seed=2)
    toy_jetnet_file(tmp_path / "jetnet" / "w150.hdf5", n=4, m=150, seed=3)
    (tmp_path / "jetnet" / "README.txt").write_text("not data")
    info = import_dataset("jetnet", tmp_path / "jetnet", tmp_path / "out.h5", kinematics="constituents")
    assert info["processes"] == {"qcd": 5, "top": 6, "wz": 4}
    assert [f["jets"] for f in info["files"]] == [5, 6, 4]  # q, t, w150: sorted by name
    ds = open_dataset(tmp_path / "out.h5")
    process = ds.column("process")
    assert process.tolist() == ["qcd"] * 5 + ["top"] * 6 + ["wz"] * 4
    np.testing.assert_array_equal(ds.column("event_index"), np.r_[np.arange(5), np.arange(6), np.arange(4)])
    np.testing.assert_allclose(ds.read_images(np.arange(15)).sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert ds.image_shape == (50, 50)
    first_top = 5
    assert ds.column("mass")[first_top] == pytest.approx(hand_mass(top[0]), rel=1e-5)
    expected = jet_images(top[:1], ds.column("eta")[first_top : first_top + 1], np.zeros(1))
    np.testing.assert_allclose(ds.read_images(np.array([first_top])), expected, atol=1e-6)
    # by default the jet_features (pt, eta, mass, num_particles) are kept
    import_dataset("jetnet", tmp_path / "jetnet" / "t.hdf5", tmp_path / "given.h5")
    given = open_dataset(tmp_path / "given.h5")
    np.testing.assert_allclose(given.column("mass"), TOY_MASS)
    assert (given.column("phi") == 0).all() and given.column("n_constituents")[0] == 22 + 5


def test_jetnet_malformed_rows(tmp_path):
    src, _ = toy_jetnet_file(tmp_path / "z.hdf5")
    edit(src, "particle_features", (1, 29, 2), np.nan)  # under mask = 0: padding, ignored
    import_dataset("jetnet", src, tmp_path / "ok.h5")
    edit(src, "particle_features", (2, 4, 2), -0.1)
    with pytest.raises(SchemaError, match=r"z.hdf5: row 2: ptrel of particle 4 = -0.1; expected .* >= 0"):
        import_dataset("jetnet", src, tmp_path / "out.h5")
    edit(src, "particle_features", (0, 0, 3), 0.5)
    with pytest.raises(SchemaError, match=r"row 0: mask of particle 0 = 0.5; expected 0 or 1"):
        import_dataset("jetnet", src, tmp_path / "out.h5")
    (tmp_path / "x.hdf5").write_bytes(src.read_bytes())
    with pytest.raises(SchemaError, match=r"x.hdf5: cannot tell the jet type from the file name"):
        import_dataset("jetnet", tmp_path / "x.hdf5", tmp_path / "out.h5")


def test_toptagging_import_reads_the_pandas_fixed_format(tmp_path):
    src, (e, px, py, pz) = toy_toptagging_file(tmp_path / "val.h5")
    info = import_dataset("toptagging", src, tmp_path / "out.h5", chunk_rows=4)
    assert info["processes"] == {"qcd": 5, "top": 5}
    ds = open_dataset(tmp_path / "out.h5")
    assert ds.column("process")[:3].tolist() == ["qcd", "top", "qcd"]
    np.testing.assert_allclose(ds.read_images(np.arange(10)).sum(axis=(1, 2)), 1.0, rtol=1e-5)
    j = 3  # jet mass from the summed four-momenta, by hand
    mass = np.sqrt(e[j].sum() ** 2 - px[j].sum() ** 2 - py[j].sum() ** 2 - pz[j].sum() ** 2)
    assert ds.column("mass")[j] == pytest.approx(mass, rel=1e-4)
    assert ds.column("pt")[j] == pytest.approx(np.hypot(px[j].sum(), py[j].sum()), rel=1e-5)
    # streaming: chunks of 4 rows give the same file as one chunk
    import_dataset("toptagging", src, tmp_path / "one.h5")
    np.testing.assert_array_equal(open_dataset(tmp_path / "one.h5").read_images(np.arange(10)),
                                  ds.read_images(np.arange(10)))
    import_dataset("toptagging", src, tmp_path / "few.h5", max_jets=7, chunk_rows=3)
    few = open_dataset(tmp_path / "few.h5")
    assert len(few) == 7
    np.testing.assert_array_equal(few.read_images(np.arange(7)), ds.read_images(np.arange(7)))


def test_toptagging_malformed(tmp_path):
    src, _ = toy_toptagging_file(tmp_path / "test.h5")
    with h5py.File(src, "r") as f:
        column = [s.decode() for s in f["table/block0_items"][()]].index("E_5")
    edit(src, "table/block0_values", (2, column), -1.0)
    with pytest.raises(SchemaError, match=r"test.h5: row 2: E_5 = -1; expected a finite number >= 0"):
        import_dataset("toptagging", src, tmp_path / "out.h5")
    src, _ = toy_toptagging_file(tmp_path / "test.h5")
    edit(src, "table/block1_values", (6, 0), 2)
    with pytest.raises(SchemaError, match=r"row 6: is_signal_new = 2; expected 0 \(qcd\) or 1 \(top\)"):
        import_dataset("toptagging", src, tmp_path / "out.h5")
    src, _ = toy_toptagging_file(tmp_path / "test.h5", fmt="table")
    with pytest.raises(SchemaError, match=r"pandas table-format store"):
        import_dataset("toptagging", src, tmp_path / "out.h5")


def test_data_import_cli(tmp_path, capsys):
    src, _ = toy_toptagging_file(tmp_path / "train.h5")
    out = tmp_path / "imported.h5"
    assert cli.main(["data", "import", "toptagging", str(src), str(out), "--image-size", "40",
                     "--max-jets", "6", "-q"]) == 0
    assert open_dataset(out).image_shape == (40, 40) and len(open_dataset(out)) == 6
    assert "6 jets (qcd 3, top 3) from 1 file(s)" in capsys.readouterr().out
    open_dataset(out).validate()
    # a generate config sets the images, flags override it
    (tmp_path / "gen.toml").write_text("[generate.images]\nsize = 32\nhalf_width = 1.0\nflip = false\n")
    assert cli.main(["data", "import", "toptagging", str(src), str(out), "--config",
                     str(tmp_path / "gen.toml"), "--no-rotate", "-q"]) == 0
    images = open_dataset(out).files[0].config["images"]
    assert open_dataset(out).image_shape == (32, 32)
    assert [images[k] for k in ("half_width", "flip", "rotate", "center")] == [1.0, False, False, True]
    edit(src, "table/block1_values", (1, 0), 7)
    assert cli.main(["data", "import", "toptagging", str(src), str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 1: is_signal_new = 7" in err[0]
