"""Simulation stage: Pythia8 events -> anti-kT jets in a pT window -> JetBatch arrays.

processes.py: SimulationConfig and the process registry; pythia.py: generation loop
(`simulate_jets`); jets.py: clustering, truth matching, N-subjettiness, `JetBatch`.
"""

from nurdad.simulation.jets import JetBatch
from nurdad.simulation.processes import PROCESSES, Process, SimulationConfig, get_process
from nurdad.simulation.pythia import simulate_jets

__all__ = ["PROCESSES", "JetBatch", "Process", "SimulationConfig", "get_process", "simulate_jets"]
