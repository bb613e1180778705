"""From generated events to jets: clustering, leading-jet selection, truth matching, substructure.

Conventions: visible final state = Pythia status > 0 without neutrinos, every particle made
massless (E = |p|, so rapidity = pseudorapidity), as a calorimeter-like jet image sees it. Jets
are anti-kT (FastJet, E-scheme) of those particles, so the sum of a jet's stored constituents
(pt, eta, phi) reproduces its 4-vector exactly. Angles: phi in (-pi, pi]; dR^2 = deta^2 + dphi^2.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import awkward as ak
import fastjet
import numpy as np

from nurdad.kinematics import wrap_phi
from nurdad.simulation.processes import SimulationConfig

NEUTRINO_IDS = (12, 14, 16)
RESONANCE_IDS = (6, 23, 24, 25)  # decay chains are followed through these to the quarks
QUARK_IDS = (1, 2, 3, 4, 5)
TIMING_KEYS = ("pythia", "clustering", "substructure")


@dataclass
class JetBatch:
    """Accepted jets, one row per jet (at most one, the leading jet, per event).

    Attributes
    ----------
    constituents : (N, M, 3) float32
        [pt (GeV), eta, phi] of the visible constituents, absolute coordinates, sorted by pt
        descending, zero-padded (pt = 0); M = max_constituents, softest beyond M dropped.
    pt, eta, phi, mass : (N,) float64
        Jet 4-vector (GeV); phi in (-pi, pi].
    n_constituents : (N,) int32
        True number of constituents (may exceed M).
    tau21, tau32 : (N,) float32
        N-subjettiness ratios (beta = 1, normalized by sum pt * R, one-pass kT axes); 0 where
        the denominator is 0.
    truth_matched : (N,) bool
        Jet matched to the process's truth particle and its decay quarks (always True for qcd).
    event_index : (N,) int64
        Index of the generated event within its (process, seed) stream.
    n_events : int
        Events generated to get these jets (acceptance = len / n_events).
    timing : dict
        Seconds spent in 'pythia' (init, generation, reading the event record), 'clustering'
        (particle selection, clustering, truth matching, constituent arrays) and
        'substructure' (N-subjettiness).
    """

    constituents: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    n_constituents: np.ndarray
    tau21: np.ndarray
    tau32: np.ndarray
    truth_matched: np.ndarray
    event_index: np.ndarray
    n_events: int
    timing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMING_KEYS, 0.0))

    _ROW_FIELDS = (
        "constituents", "pt", "eta", "phi", "mass", "n_constituents",
        "tau21", "tau32", "truth_matched", "event_index",
    )  # fmt: skip

    def __len__(self) -> int:
        return len(self.pt)

    def take(self, rows) -> JetBatch:
        """The jets at `rows` (index array, mask or slice); n_events and timing are kept."""
        return JetBatch(
            **{name: getattr(self, name)[rows] for name in self._ROW_FIELDS},
            n_events=self.n_events,
            timing=dict(self.timing),
        )

    @classmethod
    def concat(cls, batches: Sequence[JetBatch]) -> JetBatch:
        """Jets of all `batches` in order; n_events and timing are summed."""
        if not batches:
            raise ValueError("JetBatch.concat needs at least one batch")
        timing = dict.fromkeys(TIMING_KEYS, 0.0)
        for batch in batches:
            for key, seconds in batch.timing.items():
                timing[key] = timing.get(key, 0.0) + seconds
        return cls(
            **{name: np.concatenate([getattr(b, name) for b in batches]) for name in cls._ROW_FIELDS},
            n_events=sum(b.n_events for b in batches),
            timing=timing,
        )


@dataclass(frozen=True)
class EventRecord:
    """Flat view of a batch of Pythia events (`Pythia.nextBatch` output).

    Particle arrays are (P,) over all events; event e owns entries offsets[e]:offsets[e+1].
    Mother/daughter indices are Pythia's, local to the event (0 = none).
    """

    offsets: np.ndarray  # (E+1,) int64
    pid: np.ndarray
    status: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray

    @classmethod
    def from_pythia(cls, events: ak.Array) -> EventRecord:
        prt = events.prt
        counts = ak.to_numpy(ak.num(prt, axis=1))
        flat = {
            name: ak.to_numpy(ak.flatten(array))
            for name, array in [
                ("pid", prt.id), ("status", prt.status),
                ("daughter1", prt.daughter1), ("daughter2", prt.daughter2),
                ("px", prt.p.px), ("py", prt.p.py), ("pz", prt.p.pz),
            ]
        }  # fmt: skip
        return cls(offsets=np.concatenate([[0], np.cumsum(counts)]), **flat)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def event_of_particle(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))


def leading_jets(record: EventRecord, config: SimulationConfig, truth_ids: tuple[int, ...]) -> JetBatch:
    """The leading jet of each event that passes the window (and the truth match if asked).

    Returns a JetBatch whose event_index counts events within `record`, n_events = len(record),
    and timing filled for 'clustering' and 'substructure'.
    """
    t_start = time.perf_counter()
    visible = (record.status > 0) & ~np.isin(np.abs(record.pid), NEUTRINO_IDS)
    visible &= (record.px != 0) | (record.py != 0)  # a pt = 0 particle has no eta
    counts = np.bincount(record.event_of_particle[visible], minlength=len(record))
    px, py, pz = record.px[visible], record.py[visible], record.pz[visible]
    offsets = np.concatenate([[0], np.cumsum(counts)])

    jets, const_index = _cluster(px, py, pz, counts, config)
    jet_pt = np.hypot(jets["px"], jets["py"])
    jet_eta = np.arcsinh(np.divide(jets["pz"], jet_pt, out=np.zeros_like(jet_pt), where=jets["exists"]))
    accept = (
        (jet_pt >= config.pt_min_gev)
        & (jet_pt <= config.pt_max_gev)
        & (np.abs(jet_eta) < config.abs_eta_max)
        & jets["exists"]
    )
    events = np.flatnonzero(accept)
    if truth_ids:
        jet_phi = _phi(jets["px"][events], jets["py"][events])
        truth = truth_particles(record, events, truth_ids)
        matched = match_jets(jet_eta[events], jet_phi, *truth, match_dr=config.match_dr)
    else:
        matched = np.ones(len(events), dtype=bool)
    if config.require_truth_match:
        events, matched = events[matched], matched[matched]

    # constituents of the kept jets as flat (pt, eta, phi), jet after jet, pt descending
    index = ak.drop_none(ak.flatten(const_index[events], axis=1), axis=0)  # (N, var)
    n_const = ak.to_numpy(ak.num(index, axis=1)).astype(np.int32)
    rows = np.repeat(np.arange(len(events)), n_const)
    glob = offsets[events][rows] + ak.to_numpy(ak.flatten(index))  # into px, py, pz
    c_pt = np.hypot(px[glob], py[glob])
    order = np.lexsort((-c_pt, rows))
    glob, c_pt = glob[order], c_pt[order]
    c_eta, c_phi = np.arcsinh(pz[glob] / c_pt), _phi(px[glob], py[glob])
    constituents = _pad(np.stack([c_pt, c_eta, c_phi], axis=1), n_const, config.max_constituents)

    e, jpx, jpy, jpz = (jets[k][events] for k in ("E", "px", "py", "pz"))
    batch = JetBatch(
        constituents=constituents,
        pt=jet_pt[events],
        eta=jet_eta[events],
        phi=_phi(jpx, jpy),
        mass=np.sqrt(np.maximum(e**2 - jpx**2 - jpy**2 - jpz**2, 0.0)),
        n_constituents=n_const,
        tau21=np.zeros(len(events), np.float32),
        tau32=np.zeros(len(events), np.float32),
        truth_matched=matched,
        event_index=events.astype(np.int64),
        n_events=len(record),
    )
    t_clustered = time.perf_counter()
    if len(events):
        taus = nsubjettiness(c_pt, c_eta, c_phi, n_const, config.jet_radius)
        batch.tau21, batch.tau32 = tau_ratios(taus)
    batch.timing.update(clustering=t_clustered - t_start, substructure=time.perf_counter() - t_clustered)
    return batch


def _cluster(px, py, pz, counts, config: SimulationConfig):
    """Anti-kT jets of massless particles; the leading one per event and its constituent indices.

    Returns (jets, const_index): jets is a dict of (E,) arrays px, py, pz, E (zeros where no jet
    reaches pt_min) and `exists` (bool); const_index (E, 0 or 1, var) holds the leading jet's
    indices into the event's particles. Jets below pt_min are not built: they cannot be the
    leading jet of an accepted event.
    """
    _silence_fastjet_banner()
    particles = ak.unflatten(
        ak.zip({"px": px, "py": py, "pz": pz, "E": np.sqrt(px**2 + py**2 + pz**2)},
               with_name="Momentum4D"),
        counts,
    )  # fmt: skip
    sequence = fastjet.ClusterSequence(
        particles, fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_radius)
    )
    jets = sequence.inclusive_jets(config.pt_min_gev)  # unsorted
    index = sequence.constituent_index(config.pt_min_gev)  # same jet order
    pick = ak.argmax(jets.px**2 + jets.py**2, axis=1, keepdims=True)
    lead = ak.firsts(jets[pick])
    exists = ~ak.to_numpy(ak.is_none(lead))
    out = {k: ak.to_numpy(ak.fill_none(lead[k], 0.0)) for k in ("px", "py", "pz", "E")}
    out["exists"] = exists
    return out, index[pick]


_banner_silenced = False


def _silence_fastjet_banner():
    """FastJet prints a banner to C++ stdout on its first clustering: spend it on /dev/null."""
    global _banner_silenced
    if _banner_silenced:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            fastjet.ClusterSequence(
                ak.Array([[{"px": 1.0, "py": 0.0, "pz": 0.0, "E": 1.0}]], with_name="Momentum4D"),
                fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4),
            ).inclusive_jets(0.0)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_silenced = True


def truth_particles(record: EventRecord, events: np.ndarray, truth_ids: tuple[int, ...]):
    """Truth particles (last copies, |id| in truth_ids) of `events` and their decay quarks.

    The decay chain is followed through intermediate resonances (W/Z/top/H, each at its last
    copy) down to quarks; for top that gives b, q, q'. Leptons in the chain are ignored.

    Returns
    -------
    truth_row, truth_eta, truth_phi : (K,)
        Row in `events` each truth particle belongs to, and its direction.
    prong_truth, prong_eta, prong_phi : (P,)
        Truth particle (index into K) each decay quark belongs to, and its direction.
    """
    owner = record.event_of_particle
    first = record.offsets[:-1][owner]
    d1 = np.where(record.daughter1 > 0, first + record.daughter1, -1)
    d2 = np.where(record.daughter2 > 0, first + record.daughter2, -1)
    in_events = np.zeros(len(record), dtype=bool)
    in_events[events] = True
    is_copy = (d1 >= 0) & (record.pid[np.maximum(d1, 0)] == record.pid)
    truth = np.flatnonzero(np.isin(np.abs(record.pid), truth_ids) & ~is_copy & in_events[owner])
    row_of_event = np.full(len(record), -1)
    row_of_event[events] = np.arange(len(events))

    prong_truth, prong_index = [], []
    frontier, frontier_truth = truth, np.arange(len(truth))
    while len(frontier):
        parent, child = _children(frontier, d1, d2)
        child_truth = frontier_truth[parent]
        abs_id = np.abs(record.pid[child])
        quark = np.isin(abs_id, QUARK_IDS)
        prong_truth.append(child_truth[quark])
        prong_index.append(child[quark])
        resonance = np.isin(abs_id, RESONANCE_IDS)
        frontier = _last_copy(child[resonance], record.pid, d1)
        frontier_truth = child_truth[resonance]
    prong_truth, prong_index = np.concatenate(prong_truth), np.concatenate(prong_index)

    def direction(index):
        pt = np.hypot(record.px[index], record.py[index])
        return np.arcsinh(record.pz[index] / pt), _phi(record.px[index], record.py[index])

    return (
        row_of_event[owner[truth]], *direction(truth),
        prong_truth, *direction(prong_index),
    )  # fmt: skip


def _last_copy(index: np.ndarray, pid: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Follow each particle's copies (first daughter with the same id) to the last one."""
    while True:
        nxt = d1[index]
        step = (nxt >= 0) & (pid[np.maximum(nxt, 0)] == pid[index])
        if not step.any():
            return index
        index = np.where(step, nxt, index)


def _children(parents: np.ndarray, d1: np.ndarray, d2: np.ndarray):
    """(parent position, child index) pairs from Pythia's daughter1/daughter2 conventions.

    d1 <= d2: the range d1..d2; d2 none: d1 alone; d2 < d1: the two entries d1 and d2.
    """
    lo, hi = d1[parents], d2[parents]
    top = np.where(hi >= lo, hi, lo)
    n = np.where(lo >= 0, top - lo + 1, 0)
    parent = np.repeat(np.arange(len(parents)), n)
    child = np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    second = np.flatnonzero((hi >= 0) & (hi < lo))
    return np.concatenate([parent, second]), np.concatenate([child, hi[second]])


def match_jets(
    jet_eta, jet_phi, truth_row, truth_eta, truth_phi, prong_truth, prong_eta, prong_phi,
    *, match_dr: float,
) -> np.ndarray:  # fmt: skip
    """(N,) bool: jet n has a truth particle with dR < match_dr whose decay quarks all have dR <
    match_dr to the jet axis (and it has at least one). Shapes as returned by truth_particles.
    """
    truth_row = np.asarray(truth_row, dtype=np.int64)
    prong_truth = np.asarray(prong_truth, dtype=np.int64)
    ok = delta_r(jet_eta[truth_row], jet_phi[truth_row], truth_eta, truth_phi) < match_dr
    prong_row = truth_row[prong_truth]
    prong_in = delta_r(jet_eta[prong_row], jet_phi[prong_row], prong_eta, prong_phi) < match_dr
    n_prongs = np.bincount(prong_truth, minlength=len(truth_row))
    n_inside = np.bincount(prong_truth, weights=prong_in, minlength=len(truth_row))
    ok &= (n_prongs > 0) & (n_inside == n_prongs)
    matched = np.zeros(len(jet_eta), dtype=bool)
    matched[truth_row[ok]] = True
    return matched


def delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    """Angular distance with the azimuth difference wrapped into [-pi, pi)."""
    dphi = (np.asarray(phi1) - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(np.asarray(eta1) - eta2, dphi)


def nsubjettiness(pt, eta, phi, counts, jet_radius: float) -> np.ndarray:
    """(N, 3) tau_1, tau_2, tau_3 of N jets given as flat massless constituents.

    pt, eta, phi are (sum(counts),) arrays, jet after jet. Uses fjcontrib Nsubjettiness through
    FastJet: tau_N = sum_i pt_i min_k dR_ik / (sum_i pt_i * R), beta = 1, one-pass kT axes
    (exclusive kT axes refined by one minimization step). tau_N = 0 when a jet has <= N particles.

    Notes
    -----
    Thaler & Van Tilburg, JHEP 03 (2011) 015 and JHEP 02 (2012) 093.
    """
    _silence_fastjet_banner()
    pt = np.asarray(pt, dtype=np.float64)
    particles = ak.unflatten(
        ak.zip(
            {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
             "E": pt * np.cosh(eta)},
            with_name="Momentum4D",
        ),
        np.asarray(counts),
    )  # fmt: skip
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.kt_algorithm, jet_radius))
    taus = sequence.njettiness(
        measure_definition="NormalizedMeasure",
        axes_definition="OnePass_KT_Axes",
        njets=[1, 2, 3],
        beta=1.0,
        R0=jet_radius,
    )
    return ak.to_numpy(taus).reshape(-1, 3)


def tau_ratios(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tau21 = tau2/tau1 and tau32 = tau3/tau2 as float32, 0 where the denominator is 0."""

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0).astype(np.float32)

    return ratio(taus[:, 1], taus[:, 0]), ratio(taus[:, 2], taus[:, 1])


def _phi(px, py) -> np.ndarray:
    """Azimuth in (-pi, pi]."""
    return wrap_phi(np.arctan2(py, px))


def _pad(flat: np.ndarray, counts: np.ndarray, width: int) -> np.ndarray:
    """(sum(counts), F) rows, jet after jet -> (N, width, F) float32, zero-padded, truncated."""
    out = np.zeros((len(counts), width, flat.shape[1]), dtype=np.float32)
    row = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = pos < width
    out[row[keep], pos[keep]] = flat[keep]
    return out
