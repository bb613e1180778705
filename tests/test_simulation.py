"""Simulation stage: config and registry checks, toy substructure and matching, real Pythia runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from nurdad.errors import ConfigError, NurdadError
from nurdad.kinematics import jet_four_vectors
from nurdad.simulation import PROCESSES, JetBatch, SimulationConfig, get_process, simulate_jets
from nurdad.simulation.jets import (
    EventRecord,
    delta_r,
    match_jets,
    nsubjettiness,
    tau_ratios,
    truth_particles,
)
from nurdad.simulation.processes import pthat_window, wprime_mass

# ---------------------------------------------------------------- config and registry (no Pythia)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pt_min_gev", 0.0),
        ("pt_max_gev", 500.0),  # below pt_min
        ("sqrt_s_gev", 1000.0),  # below 2 * pt_max
        ("jet_radius", 0.0),
        ("jet_radius", 2.5),
        ("abs_eta_max", 0.0),
        ("match_dr", -0.1),
        ("max_constituents", 0),
        ("pythia_batch", 0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=rf"^simulation\.{field}: "):
        SimulationConfig(**{field: value})


def test_unknown_process_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown process 'foo'; expected one of \['hbb', 'qcd'"):
        get_process("foo")
    assert {"qcd", "wz", "top", "hbb", "wprime"} <= set(PROCESSES)
    assert get_process("qcd").truth_ids == ()


def test_phase_space_follows_the_window():
    assert pthat_window(SimulationConfig()) == ("PhaseSpace:pTHatMin = 500", "PhaseSpace:pTHatMax = 700")
    (line,) = wprime_mass(SimulationConfig())
    assert 1240 < float(line.split("=")[1]) < 1260  # p* = 620 GeV
    (higher,) = wprime_mass(SimulationConfig(pt_min_gev=900, pt_max_gev=1000))
    assert float(higher.split("=")[1]) > 1900


@pytest.mark.parametrize("seed", [0, 900_000_001, 1.5, True])
def test_seed_out_of_range_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed"):
        simulate_jets("qcd", 1, seed)


def test_n_jets_must_be_positive():
    with pytest.raises(ConfigError, match="n_jets"):
        simulate_jets("qcd", 0, 1)


# ---------------------------------------------------------------- substructure on toy jets


def _toy_jets(jets: list[list[tuple[float, float, float]]]):
    """Flat (pt, eta, phi) arrays and counts from a list of jets of (pt, eta, phi) particles."""
    flat = np.array([p for jet in jets for p in jet], dtype=np.float64)
    return flat[:, 0], flat[:, 1], flat[:, 2], np.array([len(j) for j in jets])


def test_tau21_small_for_two_prongs_and_large_for_one():
    rng = np.random.default_rng(0)

    def toy_cluster(eta, phi, n=15):
        pts, deta, dphi = rng.exponential(10.0, n), rng.normal(0, 0.02, n), rng.normal(0, 0.02, n)
        return list(zip(pts, eta + deta, phi + dphi, strict=True))

    toy_one = toy_cluster(0.0, 0.0, 30)
    toy_two = toy_cluster(0.0, 0.0) + toy_cluster(0.35, 0.25)
    toy_three = toy_cluster(0.0, 0.0) + toy_cluster(0.35, 0.25) + toy_cluster(-0.3, 0.3)
    taus = nsubjettiness(*_toy_jets([toy_one, toy_two, toy_three]), jet_radius=0.8)
    tau21, tau32 = tau_ratios(taus)
    assert taus.shape == (3, 3)
    assert tau21[1] < 0.2 < 0.5 < tau21[0]
    assert tau32[2] < 0.3 < 0.5 < tau32[1]


def test_tau1_of_two_equal_particles_is_half_their_distance_over_r():
    # two pt=1 particles at dR = 0.2: tau1 = (1*0.1 + 1*0.1) / (2 * 0.8); tau2 = tau3 = 0 (N >= n)
    taus = nsubjettiness(*_toy_jets([[(1.0, 0.1, 0.0), (1.0, -0.1, 0.0)]]), jet_radius=0.8)
    np.testing.assert_allclose(taus[0], [0.125, 0.0, 0.0], atol=1e-9)
    tau21, tau32 = tau_ratios(taus)
    assert tau21[0] == 0.0 and tau32[0] == 0.0  # 0/0 -> 0, no nan


# ---------------------------------------------------------------- truth matching on toy arrays


def test_match_requires_particle_and_all_prongs_within_dr():
    toy_jet_eta = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    toy_jet_phi = np.array([0.0, 0.0, 3.1, 0.0, 0.0])
    # truth k belongs to jet truth_row[k]; jet 4 has a truth particle without prongs
    truth_row = [0, 1, 2, 3, 4]
    truth_eta = [0.1, -0.5, 0.0, 0.0, 0.0]  # jet 1: truth 1.5 away
    truth_phi = [0.1, 0.0, -3.1, 0.0, 0.0]  # jet 2: across the phi = pi seam, dR ~ 0.08
    prong_truth = [0, 0, 1, 1, 2, 2, 3, 3]
    prong_eta = [0.3, -0.2, -0.5, -0.6, 0.1, -0.1, 0.2, 0.7]  # jet 3: second prong at dR 0.7
    prong_phi = [0.0, 0.1, 0.0, 0.0, 3.0, -3.0, 0.0, 0.0]
    matched = match_jets(
        toy_jet_eta, toy_jet_phi, np.array(truth_row), np.array(truth_eta), np.array(truth_phi),
        np.array(prong_truth), np.array(prong_eta), np.array(prong_phi), match_dr=0.6,
    )  # fmt: skip
    assert matched.tolist() == [True, False, True, False, False]
    assert delta_r(0.0, np.pi - 0.05, 0.0, -np.pi + 0.05) == pytest.approx(0.1)


def test_truth_particles_follow_copies_and_decays_to_the_quarks():
    # toy event: 0 system, 1 t -> copy 2 -> (W 3, b 4); W 3 -> copy 5 -> (u 6, dbar 7); 8 a gluon
    toy_pid = np.array([90, 6, 6, 24, 5, 24, 2, -1, 21])
    toy_d1 = np.array([0, 2, 3, 5, 0, 6, 0, 0, 0])
    toy_d2 = np.array([0, 2, 4, 5, 0, 7, 0, 0, 0])
    toy_eta = np.array([0, 0.5, 0.5, 0.6, 0.3, 0.6, 0.7, 0.4, -2.0])
    pt = np.full(9, 100.0)
    record = EventRecord(
        offsets=np.array([0, 9]), pid=toy_pid, status=np.full(9, -22), daughter1=toy_d1,
        daughter2=toy_d2, px=pt, py=np.zeros(9), pz=pt * np.sinh(toy_eta),
    )  # fmt: skip
    truth_row, truth_eta, _, prong_truth, prong_eta, _ = truth_particles(record, np.array([0]), (6,))
    assert truth_row.tolist() == [0]  # only the last top copy
    np.testing.assert_allclose(truth_eta, [0.5])
    assert prong_truth.tolist() == [0, 0, 0]
    np.testing.assert_allclose(sorted(prong_eta), [0.3, 0.4, 0.7])  # b, dbar, u


def test_concat_sums_events_and_timing():
    def toy_batch(n, n_events):
        return JetBatch(
            constituents=np.zeros((n, 4, 3), np.float32), pt=np.full(n, 600.0), eta=np.zeros(n),
            phi=np.zeros(n), mass=np.full(n, 80.0), n_constituents=np.ones(n, np.int32),
            tau21=np.zeros(n, np.float32), tau32=np.zeros(n, np.float32),
            truth_matched=np.ones(n, bool), event_index=np.arange(n), n_events=n_events,
            timing={"pythia": 1.0, "clustering": 0.5, "substructure": 0.25},
        )  # fmt: skip

    both = JetBatch.concat([toy_batch(2, 5), toy_batch(3, 7)])
    assert len(both) == 5 and both.n_events == 12
    assert both.timing == {"pythia": 2.0, "clustering": 1.0, "substructure": 0.5}
    assert both.constituents.shape == (5, 4, 3)


def test_fastjet_banner_stays_out_of_stdout():
    code = (
        "import numpy as np; from nurdad.simulation.jets import nsubjettiness;"
        "nsubjettiness(np.ones(2), np.array([0.1, -0.1]), np.zeros(2), np.array([2]), 0.8)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""


# ---------------------------------------------------------------- real Pythia8 + FastJet runs

N_JETS = {"qcd": 80, "wz": 40, "top": 40, "hbb": 30, "wprime": 30}


@pytest.fixture(scope="module")
def runs():
    """One small default-config run per process (ISR and MPI on)."""
    progress: dict[str, list[int]] = {name: [] for name in N_JETS}
    jets = {
        name: simulate_jets(name, n, seed=7, progress=progress[name].append) for name, n in N_JETS.items()
    }
    return jets, progress


@pytest.mark.simulation
@pytest.mark.parametrize("name", list(N_JETS))
def test_jets_pass_the_selection_and_are_consistent(runs, name):
    jets, progress = runs[0][name], runs[1][name]
    config = SimulationConfig()
    n = N_JETS[name]
    assert len(jets) == n and sum(progress) == n
    assert np.all((jets.pt >= config.pt_min_gev) & (jets.pt <= config.pt_max_gev))
    assert np.all(np.abs(jets.eta) < config.abs_eta_max)
    assert np.all((jets.phi > -np.pi) & (jets.phi <= np.pi))
    assert jets.truth_matched.all()
    assert np.all(np.diff(jets.event_index) > 0) and jets.n_events == jets.event_index[-1] + 1
    assert set(jets.timing) == {"pythia", "clustering", "substructure"}
    assert all(t > 0 for t in jets.timing.values())
    # constituents: (N, M, 3) float32, pt sorted descending, zero-padded beyond n_constituents
    assert jets.constituents.shape == (n, config.max_constituents, 3)
    assert jets.constituents.dtype == np.float32
    c_pt = jets.constituents[..., 0]
    assert np.all(np.diff(c_pt, axis=1) <= 0)
    filled = np.minimum(jets.n_constituents, config.max_constituents)
    assert np.array_equal((c_pt > 0).sum(axis=1), filled)
    assert np.all(jets.constituents[c_pt == 0] == 0)
    # the constituents add up to the jet (massless constituents, E-scheme)
    full = jets.n_constituents <= config.max_constituents
    assert full.all()
    summed = jet_four_vectors(jets.constituents)
    np.testing.assert_allclose(summed["mass"], jets.mass, rtol=1e-2, atol=0.1)
    np.testing.assert_allclose(summed["pt"], jets.pt, rtol=1e-4)
    for tau in (jets.tau21, jets.tau32):
        assert tau.dtype == np.float32 and np.all((tau >= 0) & (tau <= 1.5))


@pytest.mark.simulation
def test_jet_masses_and_substructure_follow_the_physics(runs):
    jets = runs[0]
    median = {name: np.median(batch.mass) for name, batch in jets.items()}
    assert 65 < median["wz"] < 100
    assert 65 < median["wprime"] < 100
    assert 105 < median["hbb"] < 140
    assert 150 < median["top"] < 200
    assert median["qcd"] < median["wz"]
    # two-prong jets have lower tau21 than QCD, three-prong tops lower tau32
    assert np.median(jets["wz"].tau21) < np.median(jets["qcd"].tau21) - 0.15
    assert np.median(jets["top"].tau32) < np.median(jets["qcd"].tau32) - 0.15


@pytest.mark.simulation
def test_same_seed_same_jets_other_seed_other_jets():
    config = SimulationConfig(pythia_batch=20)
    first = simulate_jets("qcd", 8, seed=3, config=config)
    again = simulate_jets("qcd", 8, seed=3, config=config)
    other = simulate_jets("qcd", 8, seed=4, config=config)
    small = simulate_jets("qcd", 8, seed=3, config=SimulationConfig(max_constituents=10, pythia_batch=7))
    for field in ("constituents", "pt", "mass", "tau21", "event_index"):
        assert np.array_equal(getattr(first, field), getattr(again, field)), field
    assert not np.array_equal(first.pt, other.pt)
    # batch size does not change the event stream; a small M only truncates the softest constituents
    assert np.array_equal(small.event_index, first.event_index)
    assert np.array_equal(small.constituents, first.constituents[:, :10])
    assert np.array_equal(small.n_constituents, first.n_constituents)


@pytest.mark.simulation
def test_without_matching_the_recoil_jets_come_back_flagged():
    config = SimulationConfig(require_truth_match=False)
    jets = simulate_jets("wz", 30, seed=5, config=config)
    assert len(jets) == 30
    assert 0 < jets.truth_matched.sum() < 30
    assert np.median(jets.mass[~jets.truth_matched]) < np.median(jets.mass[jets.truth_matched])


@pytest.mark.simulation
def test_bad_settings_name_the_setting():
    base = get_process("wprime")
    typo = dataclasses.replace(base, settings=("HardQCD:al = on",))
    with pytest.raises(NurdadError, match="HardQCD:al = on"):
        simulate_jets(typo, 1, seed=1)
    no_coupling = dataclasses.replace(base, settings=tuple(s for s in base.settings if "coup2WZ" not in s))
    with pytest.raises(NurdadError, match=r"'wprime': Pythia init\(\) failed \(.*vanishing cross sections"):
        simulate_jets(no_coupling, 1, seed=1)
