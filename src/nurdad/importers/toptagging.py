"""The top-tagging reference dataset (Kasieczka, Plehn, Thompson, Russel; Zenodo 10.5281/zenodo.2603256;
"The Machine Learning Landscape of Top Taggers", SciPost Phys. 7 (2019) 014).

``train.h5``, ``val.h5``, ``test.h5``: pandas DataFrames written with ``DataFrame.to_hdf(key='table')``
in pandas' default *fixed* format, read by ``pd.read_hdf(file, key='table')`` in the reference loaders
(github.com/jet-net/JetNet jetnet/datasets/toptagging.py; jet-universe/particle_transformer
utils/convert_top_datasets.py). One row per jet, columns ``E_i, PX_i, PY_i, PZ_i`` (GeV) for the 200
hardest constituents i = 0..199 (zero-padded, padding has E = 0), then ``truthE, truthPX, truthPY,
truthPZ`` (the top parton), ``ttv`` (split) and ``is_signal_new`` (1 top, 0 QCD).

Reading without pandas/PyTables: a fixed-format frame is the HDF5 group ``table`` (attribute
``pandas_type = 'frame'``) with ``axis0`` (column labels), ``axis1`` (row index) and, per dtype block
k, ``block{k}_items`` (the block's column labels) and ``block{k}_values`` stored transposed, i.e.
(rows, len(items)) on disk (pandas io/pytables.py ``write_array``). A *table*-format store (a
compound dataset ``table/table`` with pickled column metadata) is refused with a hint to re-save.

~550-650 GeV pT anti-kT R = 0.8 jets, |eta| < 2 (Pythia8 + Delphes, 14 TeV). Constituents: pT =
hypot(PX, PY), eta = asinh(PZ / pT), phi = atan2(PY, PX), treated as massless like every nurdad jet.
Classes: is_signal_new 1 -> top, 0 -> qcd. Nothing is given: jet pt, eta, phi, mass all come from the
constituents' four-vector sum.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from nurdad.errors import SchemaError
from nurdad.importers.base import RawJets, check_finite, check_not_empty, open_source, register, reject

LABEL = "is_signal_new"
MOMENTA = ("E", "PX", "PY", "PZ")


def frame_columns(group: h5py.Group, path: Path) -> tuple[dict[str, tuple[h5py.Dataset, int]], int]:
    """Map each column label of a pandas fixed-format frame to (its block's values, position).

    Returns the map and the number of rows.
    """
    if isinstance(group.get("table"), h5py.Dataset):
        raise SchemaError(f"{path}: 'table' is a pandas table-format store; nurdad reads the fixed format "
                          "of the published files (re-save with DataFrame.to_hdf(..., format='fixed'))")
    columns: dict[str, tuple[h5py.Dataset, int]] = {}
    n_rows = None
    k = 0
    while f"block{k}_items" in group:
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in group[f"block{k}_items"][()]]
        values = group.get(f"block{k}_values")
        if not isinstance(values, h5py.Dataset) or values.shape[1:] != (len(items),):
            shape = getattr(values, "shape", None)
            raise SchemaError(f"{path}: table/block{k}_values has shape {shape}; expected (rows, "
                              f"{len(items)}) for the {len(items)} columns of table/block{k}_items")
        if n_rows is not None and values.shape[0] != n_rows:
            raise SchemaError(f"{path}: table/block{k}_values has {values.shape[0]} rows, "
                              f"block0_values {n_rows}")
        n_rows = values.shape[0]
        columns.update({name: (values, i) for i, name in enumerate(items)})
        k += 1
    if n_rows is None:
        raise SchemaError(f"{path}: group 'table' has no block0_items/block0_values; expected a pandas "
                          "DataFrame saved with to_hdf(key='table')")
    return columns, n_rows


def _take(read: dict[int, np.ndarray], columns: dict, names: list[str]) -> np.ndarray:
    """Columns `names` of a chunk, (n, len(names)) float64; `read` maps id(block) to its rows."""
    return np.stack([read[id(columns[n][0])][:, columns[n][1]] for n in names], axis=-1).astype(np.float64)


@register("toptagging", suffixes=(".h5",),
          summary="top-tagging reference dataset (train/val/test.h5, pandas key 'table'): "
                  "is_signal_new 1 -> top, 0 -> qcd")
def read_toptagging(path: Path, chunk_rows: int) -> Iterator[RawJets]:
    with open_source(path) as f:
        group = f.get("table")
        if not isinstance(group, h5py.Group):
            raise SchemaError(f"{path}: missing group 'table'; expected a pandas DataFrame saved with "
                              "to_hdf(key='table')")
        columns, n_rows = frame_columns(group, path)
        n_const = 0
        while f"E_{n_const}" in columns:
            n_const += 1
        wanted = [f"{p}_{i}" for p in MOMENTA for i in range(n_const)] + [LABEL]
        missing = [name for name in wanted if name not in columns]
        if n_const == 0 or missing:
            raise SchemaError(f"{path}: table has no column {(missing or ['E_0'])[0]!r}; expected "
                              f"E_i, PX_i, PY_i, PZ_i (i = 0..{max(n_const, 200) - 1}) and {LABEL!r}")
        blocks = {id(columns[name][0]): columns[name][0] for name in wanted}
        for lo in range(0, n_rows, chunk_rows):
            read = {key: ds[lo : lo + chunk_rows] for key, ds in blocks.items()}
            p4 = {p: _take(read, columns, [f"{p}_{i}" for i in range(n_const)]) for p in MOMENTA}
            for p in MOMENTA:
                check_finite(path, lo, p4[p], p + "_{}", minimum=0.0 if p == "E" else None)
            real = p4["E"] > 0
            pt = np.where(real, np.hypot(p4["PX"], p4["PY"]), 0.0)
            reject(path, lo, real & (pt == 0), p4["E"], "E_{} (with PX = PY = 0)",
                   "a constituent with transverse momentum")
            check_not_empty(path, lo, pt, "E")
            with np.errstate(divide="ignore", invalid="ignore"):
                eta = np.where(real, np.arcsinh(p4["PZ"] / pt), 0.0)
            phi = np.where(real, np.arctan2(p4["PY"], p4["PX"]), 0.0)
            label = _take(read, columns, [LABEL])[:, 0]
            reject(path, lo, ~np.isin(label, (0, 1)), label, LABEL, "0 (qcd) or 1 (top)")
            yield RawJets(lo, np.stack([pt, eta, phi], axis=-1), np.where(label == 1, "top", "qcd"))
