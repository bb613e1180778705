"""What to simulate: the simulation config and the registry of physics processes.

A process is a set of Pythia8 settings plus what its jets are truth-matched to. Adding a process
is adding one `Process` entry to `PROCESSES`. Settings that depend on the jet pT window (the
pTHat range, or a resonance mass) come from the process's `phase_space(config)`, so changing the
window in the config moves the generation with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from nurdad.errors import ConfigError

W_MASS_GEV = 80.385  # Pythia8 defaults, used to place the W' resonance
Z_MASS_GEV = 91.1876


@dataclass(frozen=True)
class SimulationConfig:
    """Event generation and jet selection (one leading jet per event at most).

    Defaults follow the standard top-tagging benchmark: 13 TeV pp, anti-kT R = 0.8,
    leading jet with 550 <= pT <= 650 GeV and |eta| < 2.
    """

    sqrt_s_gev: float = 13000.0  # pp centre-of-mass energy (GeV)
    jet_radius: float = 0.8  # anti-kT R
    pt_min_gev: float = 550.0  # leading-jet pT window, inclusive (GeV)
    pt_max_gev: float = 650.0
    abs_eta_max: float = 2.0  # leading jet |eta| < this
    isr: bool = True  # PartonLevel:ISR (ISR+MPI are ~85% of the generation time)
    mpi: bool = True  # PartonLevel:MPI (off lowers QCD jet masses)
    require_truth_match: bool = True  # keep only truth-matched jets of non-QCD processes
    match_dr: float = 0.6  # max dR(jet, boson/top) and dR(jet, each decay quark)
    max_constituents: int = 200  # padding length M of the constituent arrays (softest dropped)
    pythia_batch: int = 100  # events per Pythia nextBatch call

    def __post_init__(self):
        checks = [
            ("pt_min_gev", self.pt_min_gev > 0, "must be > 0"),
            ("pt_max_gev", self.pt_max_gev > self.pt_min_gev, "must be > pt_min_gev"),
            ("sqrt_s_gev", self.sqrt_s_gev > 2 * self.pt_max_gev, "must be > 2 * pt_max_gev"),
            ("jet_radius", 0 < self.jet_radius <= 2, "must be in (0, 2]"),
            ("abs_eta_max", self.abs_eta_max > 0, "must be > 0"),
            ("match_dr", self.match_dr > 0, "must be > 0"),
            ("max_constituents", self.max_constituents >= 1, "must be >= 1"),
            ("pythia_batch", self.pythia_batch >= 1, "must be >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"simulation.{name}: {expected}, got {getattr(self, name)!r}")


def pthat_window(config: SimulationConfig) -> tuple[str, ...]:
    """pTHat range of a 2 -> 2 process around the jet window, widened by half its width.

    The margin lets out-of-cone radiation and ISR recoil move jets into the window; for the
    default 550-650 GeV window this gives pTHat in [500, 700] GeV.
    """
    margin = 0.5 * (config.pt_max_gev - config.pt_min_gev)
    low = max(config.pt_min_gev - margin, 0.5 * config.pt_min_gev)
    return (f"PhaseSpace:pTHatMin = {low:g}", f"PhaseSpace:pTHatMax = {config.pt_max_gev + margin:g}")


def wprime_mass(config: SimulationConfig) -> tuple[str, ...]:
    """W' mass that puts the Jacobian peak of the W pT 70% of the way into the jet window.

    In W' -> W Z at rest the W momentum p* solves M = sqrt(p*^2 + mW^2) + sqrt(p*^2 + mZ^2), and
    the W pT piles up just below p* (Jacobian peak, smeared by the W' recoil against ISR). The
    default window gives p* = 620 GeV, M ~ 1252 GeV.
    """
    p_star = config.pt_min_gev + 0.7 * (config.pt_max_gev - config.pt_min_gev)
    mass = math.hypot(p_star, W_MASS_GEV) + math.hypot(p_star, Z_MASS_GEV)
    return (f"34:m0 = {mass:.1f}",)


@dataclass(frozen=True)
class Process:
    """A registry entry: Pythia settings and the truth particle a jet is matched to.

    Truth matching (non-QCD): the last copy of a particle with |PDG id| in `truth_ids` within
    `match_dr` of the jet axis, with all its decay quarks (following intermediate W/Z/top/H
    down to quarks; for top: b, q, q') within `match_dr` as well. `truth_ids == ()` means no
    matching (every jet counts as matched).
    """

    name: str
    description: str
    settings: tuple[str, ...]  # Pythia readString lines (process switches, forced decays)
    truth_ids: tuple[int, ...]  # |PDG id| of the particle to match; () = none
    phase_space: Callable[[SimulationConfig], tuple[str, ...]] = pthat_window


_HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_HADRONIC_Z = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5")
_INVISIBLE_Z = ("23:onMode = off", "23:onIfAny = 12 14 16")

PROCESSES: dict[str, Process] = {
    p.name: p
    for p in [
        Process(
            "qcd",
            "QCD dijets (HardQCD:all): light-quark and gluon jets, the main background.",
            ("HardQCD:all = on",),
            (),
        ),
        Process(
            "wz",
            "W/Z + parton, bosons decaying to quarks: two-prong jets at 80/91 GeV "
            "(about half the leading jets are the recoiling parton; matching removes them).",
            (
                "WeakBosonAndParton:qqbar2Wg = on",
                "WeakBosonAndParton:qg2Wq = on",
                "WeakBosonAndParton:qqbar2gmZg = on",
                "WeakBosonAndParton:qg2gmZq = on",
                "WeakZ0:gmZmode = 2",
                *_HADRONIC_W,
                *_HADRONIC_Z,
            ),
            (23, 24),
        ),
        Process(
            "top",
            "ttbar with hadronic W decays: three-prong jets at ~173 GeV "
            "(matching keeps the fully merged ones, b and both W quarks inside).",
            ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_HADRONIC_W),
            (6,),
        ),
        Process(
            "hbb",
            "Z H with H -> b bbar and Z -> neutrinos: two-prong b-quark jets at 125 GeV "
            "recoiling against nothing visible, so the Higgs is the leading jet.",
            (
                "HiggsSM:ffbar2HZ = on",
                "25:onMode = off",
                "25:onIfAll = 5 -5",
                *_INVISIBLE_Z,
            ),
            (25,),
        ),
        Process(
            "wprime",
            "W' -> W Z (s-channel resonance, mass set from the pT window), W -> quarks, "
            "Z -> neutrinos: clean two-prong W jets from a resonance instead of W + parton.",
            (
                "NewGaugeBoson:ffbar2Wprime = on",
                "Wprime:coup2WZ = 1.",  # without it every W' cross section vanishes
                "34:onMode = off",
                "34:onIfAll = 23 24",
                *_HADRONIC_W,
                *_INVISIBLE_Z,
            ),
            (24,),
            wprime_mass,
        ),
    ]
}


def get_process(name: str) -> Process:
    """The registered process called `name` (raises ConfigError naming the known ones)."""
    try:
        return PROCESSES[name]
    except KeyError:
        raise ConfigError(f"unknown process {name!r}; expected one of {sorted(PROCESSES)}") from None
