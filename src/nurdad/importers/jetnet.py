"""JetNet (Kansal et al., NeurIPS 2021, arXiv:2106.11535; Zenodo records 6975118 for 30 and 6975117
for 150 particles per jet).

One file per jet type, named by the type and the particle count: ``g.hdf5, q.hdf5, t.hdf5, w.hdf5,
z.hdf5`` (30 particles) and ``g150.hdf5, ...`` (150 particles), as the `jetnet` package's
``JetNet.getData`` downloads and reads them (github.com/jet-net/JetNet, jetnet/datasets/jetnet.py).
The type exists only in the file name. Each file holds (Zenodo record description):

- ``particle_features`` (N, 30 or 150, 4): [eta_rel, phi_rel, pT_rel, mask] per particle, with
  eta_rel = eta - eta_jet, phi_rel = phi - phi_jet, pT_rel = pT / pT_jet; mask = 1 for a real
  particle, 0 for padding (whose features are zero);
- ``jet_features`` (N, 4): [pT (GeV), eta, mass (GeV), number of particles] of the whole jet (the
  particle count and mass are those of the jet before truncation to 30/150 particles).

~1 TeV anti-kT R = 0.8 jets (Pythia8, no detector simulation). Constituents: pT = pT_rel * pT_jet,
eta = eta_rel + eta_jet, phi = phi_rel (the jet phi is not stored; it is set to 0, which the image
preprocessing does not see). Classes: g, q -> qcd; w, z -> wz; t -> top. Given columns: pt, eta,
mass, n_constituents, and phi = 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nurdad.errors import SchemaError
from nurdad.importers.base import (
    RawJets,
    check_finite,
    check_not_empty,
    open_source,
    register,
    reject,
    require_dataset,
    require_rows,
)

FILE_NAME = re.compile(r"^(?P<type>[gqtwz])(?P<particles>\d*)\.hdf5$")
PROCESS = {"g": "qcd", "q": "qcd", "w": "wz", "z": "wz", "t": "top"}
PARTICLE_FEATURES = ("etarel", "phirel", "ptrel", "mask")
JET_FEATURES = ("pt", "eta", "mass", "num_particles")


def jet_type(path: Path) -> str:
    """The JetNet jet type ('g', 'q', 't', 'w' or 'z') that `path`'s name declares."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise SchemaError(f"{path}: cannot tell the jet type from the file name; JetNet files are "
                          "named g, q, t, w or z plus an optional particle count, e.g. t.hdf5, t150.hdf5")
    return match["type"]


@register("jetnet", suffixes=(".hdf5",),
          summary="JetNet g/q/t/w/z[150].hdf5 (a file or a directory of them): g,q -> qcd; w,z -> wz; "
                  "t -> top")
def read_jetnet(path: Path, chunk_rows: int) -> Iterator[RawJets]:
    process = PROCESS[jet_type(path)]
    with open_source(path) as f:
        particles = require_dataset(f, path, "particle_features", ndim=3, last=4,
                                    expected="(jets, particles, 4: etarel, phirel, ptrel, mask)")
        jets = require_dataset(f, path, "jet_features", ndim=2, last=4,
                               expected="(jets, 4: pt, eta, mass, num_particles)")
        n_rows = require_rows(path, {"particle_features": particles, "jet_features": jets})
        for lo in range(0, n_rows, chunk_rows):
            block = particles[lo : lo + chunk_rows].astype(np.float64)  # (n, M, 4)
            jet = jets[lo : lo + chunk_rows].astype(np.float64)          # (n, 4)
            for k, name in enumerate(JET_FEATURES):
                check_finite(path, lo, jet[:, k], f"jet_features {name}",
                             minimum=None if name == "eta" else 0.0)
            mask = block[:, :, 3]
            reject(path, lo, ~((mask == 0) | (mask == 1)), mask, "mask of particle {}", "0 or 1")
            real = mask == 1
            for k, name in enumerate(PARTICLE_FEATURES[:3]):
                check_finite(path, lo, np.where(real, block[:, :, k], 0.0), name + " of particle {}",
                             minimum=0.0 if name == "ptrel" else None)
            pt = np.where(real, block[:, :, 2] * jet[:, :1], 0.0)
            check_not_empty(path, lo, pt, "ptrel * jet pt")
            constituents = np.stack([pt, np.where(real, block[:, :, 0] + jet[:, 1:2], 0.0),
                                     np.where(real, block[:, :, 1], 0.0)], axis=-1)
            n = len(jet)
            given = {"pt": jet[:, 0], "eta": jet[:, 1], "mass": jet[:, 2], "phi": np.zeros(n),
                     "n_constituents": jet[:, 3]}
            yield RawJets(lo, constituents, np.full(n, process), given)
