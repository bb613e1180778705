"""The hls4ml LHC jet dataset (Zenodo 10.5281/zenodo.3602260, 100 or 150 particles per jet).

Layout of every ``jetImage_*_{100,150}p_*.h5`` file (read with h5py; checked against the tutorial
that introduced the files, github.com/pierinim/tutorials GGI_Jan2021/Lecture1/
Notebook1_ExploreDataset.ipynb, and the per-file survey of the 150p archives in the HuggingFace
mirror fastmachinelearning/hls4ml_lhc_jets_150p):

- ``jets`` (N, 59) float64: 53 jet observables (``j_ptfrac, j_pt, j_eta, j_mass, j_tau1_b1, ...,
  j_multiplicity``) then the one-hot class flags ``j_g, j_q, j_w, j_z, j_t, j_undef``;
  ``jetFeatureNames`` (59,) names the columns.
- ``jetConstituentList`` (N, M, 16) float64, M = 100 or 150, pT-ordered and zero-padded (padding
  rows have ``j1_pt == 0``); ``particleFeatureNames`` names the columns: ``j1_px, j1_py, j1_pz,
  j1_e, j1_erel, j1_pt, j1_ptrel, j1_eta, j1_etarel, j1_etarot, j1_phi, j1_phirel, j1_phirot,
  j1_deltaR, j1_costheta, j1_costhetarel`` and a 17th name, ``j1_pdgid``, without a column. Names
  are therefore matched to the first ``jetConstituentList.shape[-1]`` entries, never by index.
- ``jetImage``, ``jetImageECAL``, ``jetImageHCAL``: 100x100 images, not used (nurdad makes its own
  with its own preprocessing, so imported and simulated jets share one pixelization).

Jets are ~1 TeV anti-kT R = 0.8 jets (Pythia8 + Delphes, 13 TeV). Constituents are taken as
(``j1_pt``, ``j1_eta``, ``j1_phi``), absolute coordinates. Classes: g, q -> qcd; w, z -> wz; t -> top.
Given columns: ``j_mass``, ``j_pt``, ``j_eta`` (the jet phi is not stored: it comes from the
constituents' four-vector sum).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nurdad.errors import SchemaError
from nurdad.importers.base import (
    RawJets,
    check_finite,
    check_not_empty,
    name_indices,
    open_source,
    read_names,
    register,
    require_dataset,
    require_rows,
)

PARTICLE_FIELDS = ("j1_pt", "j1_eta", "j1_phi")
CLASS_FLAGS = {"j_g": "qcd", "j_q": "qcd", "j_w": "wz", "j_z": "wz", "j_t": "top"}
GIVEN_FIELDS = {"mass": "j_mass", "pt": "j_pt", "eta": "j_eta"}


@register("hls4ml", suffixes=(".h5",),
          summary="hls4ml LHC jets (jetImage_*_150p_*.h5): g,q -> qcd; w,z -> wz; t -> top")
def read_hls4ml(path: Path, chunk_rows: int) -> Iterator[RawJets]:
    with open_source(path) as f:
        constituents = require_dataset(f, path, "jetConstituentList", ndim=3,
                                       expected="(jets, particles, features)")
        jets = require_dataset(f, path, "jets", ndim=2, expected="(jets, features)")
        n_rows = require_rows(path, {"jetConstituentList": constituents, "jets": jets})
        particle_names = read_names(f, path, "particleFeatureNames")
        jet_names = read_names(f, path, "jetFeatureNames")
        for what, names, width in (("particleFeatureNames", particle_names, constituents.shape[2]),
                                   ("jetFeatureNames", jet_names, jets.shape[1])):
            if len(names) < width:
                raise SchemaError(f"{path}: {what} has {len(names)} names for {width} columns")
        particle_names, jet_names = particle_names[: constituents.shape[2]], jet_names[: jets.shape[1]]
        particle = name_indices(particle_names, PARTICLE_FIELDS, path, "particleFeatureNames")
        flags = name_indices(jet_names, tuple(CLASS_FLAGS), path, "jetFeatureNames")
        given = {key: jet_names.index(name) for key, name in GIVEN_FIELDS.items() if name in jet_names}
        processes = np.array(list(CLASS_FLAGS.values()))
        for lo in range(0, n_rows, chunk_rows):
            block = constituents[lo : lo + chunk_rows][:, :, particle]  # (n, M, 3) pt, eta, phi
            jet_block = jets[lo : lo + chunk_rows]
            for k, name in enumerate(PARTICLE_FIELDS):
                check_finite(path, lo, block[:, :, k], name + " of constituent {}",
                             minimum=0.0 if name == "j1_pt" else None)
            check_not_empty(path, lo, block[:, :, 0], "j1_pt")
            onehot = jet_block[:, flags]
            bad = ~((onehot == 0) | (onehot == 1)).all(axis=1) | (onehot.sum(axis=1) != 1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise SchemaError(f"{path}: row {lo + row}: class flags {', '.join(CLASS_FLAGS)} = "
                                  f"{onehot[row].tolist()}; expected exactly one 1, the rest 0")
            columns = {}
            for key, index in given.items():
                check_finite(path, lo, jet_block[:, index], GIVEN_FIELDS[key],
                             minimum=0.0 if key in ("mass", "pt") else None)
                columns[key] = jet_block[:, index]
            yield RawJets(lo, block, processes[onehot.argmax(axis=1)], columns)
