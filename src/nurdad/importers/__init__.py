"""Importers of public jet datasets into nurdad's HDF5 schema, with the images of `nurdad generate`.

Formats (one registry entry each, see `IMPORTERS`; adding one is one module with a `register`ed reader):

- ``hls4ml``: the hls4ml LHC jet dataset (`nurdad.importers.hls4ml`);
- ``jetnet``: JetNet 30/150 (`nurdad.importers.jetnet`);
- ``toptagging``: the top-tagging reference dataset (`nurdad.importers.toptagging`).
"""

from nurdad.importers import hls4ml, jetnet, toptagging  # noqa: F401  (they register themselves)
from nurdad.importers.base import IMPORTERS, Importer, RawJets, register
from nurdad.importers.pipeline import KINEMATICS, import_dataset

__all__ = ["IMPORTERS", "KINEMATICS", "Importer", "RawJets", "import_dataset", "register"]
