"""The importer contract: a registry of readers that turn public jet files into constituent chunks.

A reader is registered per format with `register` and yields `RawJets` chunks of a source file, in
nurdad's constituent convention ((N, M, 3) [pT (GeV), eta, phi], padding pT = 0, as in
`nurdad.images`). Readers check their source layout when they open a file and every value they hand
on, raising one `SchemaError` line that names the file, the row and the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nurdad.errors import SchemaError

# the jet columns a reader may supply from the source; the rest come from the constituents
GIVEN_COLUMNS = ("mass", "pt", "eta", "phi", "n_constituents")


@dataclass
class RawJets:
    """One chunk of a source file.

    first_row : row of the first jet within its source file (becomes ``event_index``).
    constituents : (n, M, 3) float64 [pT (GeV), eta, phi]; padding rows pT = 0.
    process : (n,) str, nurdad process names ('qcd', 'wz', 'top').
    given : jet columns the source provides, each (n,), keys from `GIVEN_COLUMNS`.
    """

    first_row: int
    constituents: np.ndarray
    process: np.ndarray
    given: dict[str, np.ndarray] = field(default_factory=dict)


Reader = Callable[[Path, int], Iterator[RawJets]]


@dataclass(frozen=True)
class Importer:
    name: str
    read: Reader                   # (source file, rows per chunk) -> chunks in row order
    suffixes: tuple[str, ...]      # file endings taken when the input is a directory
    summary: str                   # one line for --help


IMPORTERS: dict[str, Importer] = {}


def register(name: str, suffixes: tuple[str, ...], summary: str) -> Callable[[Reader], Reader]:
    """Decorator adding a reader to `IMPORTERS` under `name`."""

    def add(read: Reader) -> Reader:
        assert name not in IMPORTERS, f"importer {name!r} registered twice"
        IMPORTERS[name] = Importer(name, read, suffixes, summary)
        return read

    return add


# ------------------------------------------------------------------------------------- file access
@contextlib.contextmanager
def open_source(path: Path) -> Iterator[h5py.File]:
    """Open a source HDF5 file read-only, or a one-line SchemaError."""
    if not path.is_file():
        raise SchemaError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise SchemaError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        yield handle


def require_dataset(f: h5py.Group, path: Path, name: str, ndim: int, last: int | None = None,
                    expected: str = "") -> h5py.Dataset:
    """The dataset `name` of `f`, checked for its rank (and last dimension)."""
    node = f.get(name)
    hint = f" {expected}" if expected else ""
    if not isinstance(node, h5py.Dataset):
        raise SchemaError(f"{path}: missing dataset {name!r}{hint}")
    if node.ndim != ndim or (last is not None and node.shape[-1] != last):
        raise SchemaError(f"{path}: dataset {name!r} has shape {node.shape}; "
                          f"expected{hint or f' rank {ndim}'}")
    return node


def require_rows(path: Path, datasets: dict[str, h5py.Dataset]) -> int:
    """The common first dimension of `datasets`, or a SchemaError naming the two that differ."""
    rows = {name: ds.shape[0] for name, ds in datasets.items()}
    if len(set(rows.values())) > 1:
        raise SchemaError(f"{path}: datasets have different numbers of rows {rows}; expected one per jet")
    return next(iter(rows.values()))


def read_names(f: h5py.Group, path: Path, name: str) -> list[str]:
    """A 1-d dataset of (byte) strings as a list of str."""
    node = require_dataset(f, path, name, ndim=1, expected="(a list of names)")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in node[()]]


def name_indices(names: list[str], wanted: tuple[str, ...], path: Path, where: str) -> list[int]:
    """Positions of `wanted` in `names`, or a SchemaError naming the first one missing."""
    for name in wanted:
        if name not in names:
            raise SchemaError(f"{path}: {where} has no {name!r} (it lists {names})")
    return [names.index(name) for name in wanted]


# ------------------------------------------------------------------------------------ value checks
def reject(path: Path, first_row: int, bad: np.ndarray, values: np.ndarray, field: str,
           expected: str) -> None:
    """SchemaError for the first True of `bad` (n,) or (n, M): names the row and `field`.

    `field` may hold a ``{}`` placeholder for the constituent index (the second axis).
    """
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SchemaError(f"{path}: row {first_row + index[0]}: {field.format(*index[1:])} = "
                          f"{values[index]:g}; expected {expected}")


def check_finite(path: Path, first_row: int, values: np.ndarray, field: str,
                 minimum: float | None = None) -> None:
    """Reject NaN/inf (and values below `minimum`) in `values` (n,) or (n, M)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < minimum if minimum is not None else False)
    reject(path, first_row, bad, values, field,
           "a finite number" + (f" >= {minimum:g}" if minimum is not None else ""))


def check_not_empty(path: Path, first_row: int, pt: np.ndarray, field: str) -> None:
    """Reject jets (rows of (n, M) `pt`) without any constituent of pT > 0."""
    empty = ~(pt > 0).any(axis=1)
    if empty.any():
        row = first_row + int(np.flatnonzero(empty)[0])
        raise SchemaError(f"{path}: row {row}: no constituent with {field} > 0; expected at least one")
