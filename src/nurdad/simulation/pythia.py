"""Event generation with Pythia8 (pythia8mc) and the jet loop that fills a JetBatch.

One generator per (process, seed) stream: `Random:seed = seed` makes streams independent across
workers and the output reproducible (same seed, config and package versions -> same jets).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable

import pythia8mc

from nurdad.errors import ConfigError, NurdadError
from nurdad.simulation.jets import EventRecord, JetBatch, leading_jets
from nurdad.simulation.processes import Process, SimulationConfig, get_process

logger = logging.getLogger(__name__)

MAX_SEED = 900_000_000  # Pythia's Random:seed range is [1, 900000000] for explicit seeds
GIVE_UP_EVENTS = 20_000  # no accepted jet after this many events: the setup cannot work

_QUIET = ("Print:quiet = on", "Next:numberCount = 0")


def pythia_settings(process: Process, seed: int, config: SimulationConfig) -> list[str]:
    """All readString lines for `process`: beams, switches, seed, then the process's own."""
    return [
        f"Beams:eCM = {config.sqrt_s_gev:g}",
        f"PartonLevel:ISR = {'on' if config.isr else 'off'}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        *process.settings,
        *process.phase_space(config),
    ]


def make_generator(process: Process, seed: int, config: SimulationConfig) -> pythia8mc.Pythia:
    """An initialized, quiet Pythia for `process`; NurdadError names a rejected setting."""
    pythia = pythia8mc.Pythia("", False)
    for line in (*_QUIET, *pythia_settings(process, seed, config)):
        if not pythia.readString(line):
            raise NurdadError(f"process {process.name!r}: Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise NurdadError(
            f"process {process.name!r}: Pythia init() failed ({_init_failure(process, seed, config)})"
        )
    return pythia


def _init_failure(process: Process, seed: int, config: SimulationConfig) -> str:
    """Pythia's own error lines for a failed init (Print:quiet hides them): init again verbosely
    with C++ stdout captured in a temporary file."""
    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(process, seed, config):
        pythia.readString(line)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as capture:
        try:
            os.dup2(capture.fileno(), 1)
            pythia.init()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        errors = [ln.strip().strip("*| ") for ln in capture if re.search(r"Error|Abort", ln)]
    return "; ".join(errors[:3]) or "no reason given"


def simulate_jets(
    process: str | Process,
    n_jets: int,
    seed: int,
    config: SimulationConfig = SimulationConfig(),  # noqa: B008 (frozen, so safe to share)
    progress: Callable[[int], None] | None = None,
) -> JetBatch:
    """Generate events until exactly `n_jets` leading jets pass the window (and truth matching).

    Parameters
    ----------
    process : registry name ('qcd', 'wz', 'top', 'hbb', 'wprime') or a Process.
    n_jets : number of jets to return (>= 1).
    seed : Pythia random seed in [1, 900_000_000]; one stream per (process, seed).
    progress : called after every Pythia batch with the number of newly accepted jets.

    Returns
    -------
    JetBatch with len == n_jets; n_events counts the events up to the last jet kept.
    """
    if isinstance(process, str):
        process = get_process(process)
    if isinstance(n_jets, bool) or not isinstance(n_jets, int) or n_jets < 1:
        raise ConfigError(f"simulation n_jets: expected an integer >= 1, got {n_jets!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 1 <= seed <= MAX_SEED:
        raise ConfigError(f"simulation seed: expected an integer in [1, {MAX_SEED}], got {seed!r}")

    start = time.perf_counter()
    pythia = make_generator(process, seed, config)
    pythia_seconds = time.perf_counter() - start
    batches: list[JetBatch] = []
    n_accepted = n_generated = 0
    while n_accepted < n_jets:
        start = time.perf_counter()
        record = EventRecord.from_pythia(pythia.nextBatch(config.pythia_batch))
        pythia_seconds += time.perf_counter() - start
        batch = leading_jets(record, config, process.truth_ids)
        batch = batch.take(slice(0, n_jets - n_accepted))
        batch.event_index += n_generated
        n_generated += len(record)
        n_accepted += len(batch)
        batches.append(batch)
        if progress is not None:
            progress(len(batch))
        if n_accepted == 0 and n_generated >= GIVE_UP_EVENTS:
            raise NurdadError(
                f"process {process.name!r}: no jet passed the selection in {n_generated} events; "
                "check simulation.pt_min_gev/pt_max_gev/abs_eta_max"
            )
    jets = JetBatch.concat(batches)
    jets.n_events = int(jets.event_index[-1]) + 1
    jets.timing["pythia"] = pythia_seconds
    logger.info(
        "%s seed %d: %d jets from %d events (%.1f%%) in %.1f s",
        process.name, seed, len(jets), jets.n_events, 100 * len(jets) / jets.n_events,
        sum(jets.timing.values()),
    )  # fmt: skip
    return jets
