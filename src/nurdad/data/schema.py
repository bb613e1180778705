"""The HDF5 schema of nurdad jet files, with validating readers, an atomic writer and merging.

Layout (one row per jet; every dataset has the same first dimension N):

=================  ============  =====================================================================
dataset            dtype         meaning
=================  ============  =====================================================================
images             float32       (N, H, W) preprocessed pT images (see `nurdad.images`), chunked, gzip
process            S16           process name ('qcd', 'wz', 'top', ...), the class label source
mass               float32       jet mass [GeV] (the default nuisance)
pt, eta, phi       float32       jet kinematics [GeV, -, rad]
n_constituents     int32         number of visible constituents
tau21, tau32       float32       N-subjettiness ratios (beta = 1); NaN when unknown (imported data)
truth_matched      bool          the W/Z/top/H was matched to the jet (always True for qcd)
seed               int64         random seed of the shard that produced the jet (-1 if imported)
event_index        int64         event number within that shard's stream (-1 if imported)
=================  ============  =====================================================================

File attributes: ``nurdad_schema_version`` (int), ``config`` (JSON of the settings that made the
file), ``provenance`` (JSON: versions, git commit, host, time), ``sources`` (JSON list, for merges).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from nurdad.errors import SchemaError
from nurdad.io import atomic_path, provenance

SCHEMA_VERSION = 1
COLUMNS: dict[str, np.dtype] = {
    "process": np.dtype("S16"),
    "mass": np.dtype("float32"),
    "pt": np.dtype("float32"),
    "eta": np.dtype("float32"),
    "phi": np.dtype("float32"),
    "n_constituents": np.dtype("int32"),
    "tau21": np.dtype("float32"),
    "tau32": np.dtype("float32"),
    "truth_matched": np.dtype("bool"),
    "seed": np.dtype("int64"),
    "event_index": np.dtype("int64"),
}
REQUIRED = ("images", "process", "mass")
_DEFAULTS = {"tau21": np.nan, "tau32": np.nan, "truth_matched": True, "seed": -1, "event_index": -1,
             "n_constituents": -1, "pt": np.nan, "eta": np.nan, "phi": np.nan}
_CHUNK_ROWS = 256
_SCAN_ROWS = 8192


def write_jets(
    path: str | os.PathLike,
    images: np.ndarray,
    columns: dict[str, np.ndarray],
    config: dict | None = None,
    sources: list | None = None,
) -> Path:
    """Write jets to `path` atomically in the nurdad schema.

    Columns missing from `columns` are filled with their documented defaults; unknown columns are
    rejected. `config` (the settings that made the data) is stored as a JSON attribute.
    """
    path = Path(path)
    n = len(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise SchemaError(f"{path}: images must be (N, H, W) with H == W, got {images.shape}")
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise SchemaError(f"{path}: unknown column {unknown[0]!r}; expected one of {sorted(COLUMNS)}")
    for name, values in columns.items():
        if len(values) != n:
            raise SchemaError(f"{path}: column {name!r} has {len(values)} rows, images have {n}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(
            "images", data=images.astype(np.float32), chunks=(max(1, min(n, _CHUNK_ROWS)), *images.shape[1:]),
            compression="gzip", compression_opts=4, shuffle=True,
        )
        for name, dtype in COLUMNS.items():
            values = columns.get(name)
            if values is None:
                values = np.full(n, _DEFAULTS[name], dtype=dtype)
            f.create_dataset(name, data=np.asarray(values).astype(dtype))
        f.attrs["nurdad_schema_version"] = SCHEMA_VERSION
        f.attrs["config"] = json.dumps(config or {}, sort_keys=True)
        f.attrs["provenance"] = json.dumps(provenance(), sort_keys=True)
        f.attrs["sources"] = json.dumps(sources or [])
    return path


class JetFile:
    """A validated nurdad jet file. Opening checks the structure; `validate(deep=True)` scans values.

    The HDF5 handle is opened lazily per process, so a JetFile can be used by DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise SchemaError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise SchemaError(f"{self.path}: not a file")
        if not h5py.is_hdf5(self.path):
            raise SchemaError(f"{self.path}: not an HDF5 file (expected a nurdad jet file)")
        self._handle = None
        self._pid = None
        f = self._file()
        version = int(f.attrs.get("nurdad_schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path}: schema version {version} is newer than this nurdad's "
                f"({SCHEMA_VERSION}); upgrade nurdad"
            )
        for name in REQUIRED:
            if name not in f:
                raise SchemaError(
                    f"{self.path}: missing dataset {name!r} (a nurdad jet file has {list(REQUIRED)}"
                    " and the columns of nurdad.data.COLUMNS)"
                )
        images = f["images"]
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise SchemaError(
                f"{self.path}: dataset 'images' has shape {images.shape}; expected (N, H, W), H == W"
            )
        self.n_jets = images.shape[0]
        self.image_shape = tuple(images.shape[1:])
        if self.n_jets == 0:
            raise SchemaError(f"{self.path}: the file holds no jets")
        self.columns = [name for name in COLUMNS if name in f]
        for name in self.columns:
            if f[name].shape != (self.n_jets,):
                raise SchemaError(
                    f"{self.path}: dataset {name!r} has shape {f[name].shape}; expected "
                    f"({self.n_jets},) like 'images'"
                )
        self.config = json.loads(f.attrs.get("config", "{}"))

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as exc:
                raise SchemaError(f"{self.path}: cannot open ({exc})") from None
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_pid": None}

    def __len__(self) -> int:
        return self.n_jets

    def column(self, name: str) -> np.ndarray:
        """A whole column; 'process' comes back as a str array."""
        if name not in self._file():
            raise SchemaError(f"{self.path}: missing column {name!r}")
        values = self._file()[name][()]
        return values.astype(str) if name == "process" else values

    def read_images(self, rows: np.ndarray | slice) -> np.ndarray:
        """Images at `rows` (a slice, or sorted unique indices), (n, H, W) float32."""
        return self._file()["images"][rows]

    def validate(self) -> None:
        """Scan values: finite masses, finite non-negative pixels, known dtypes. Chunked, O(chunk) memory."""
        mass = self.column("mass")
        if not np.all(np.isfinite(mass)):
            bad = int(np.flatnonzero(~np.isfinite(mass))[0])
            raise SchemaError(f"{self.path}: column 'mass' has NaN/inf (first at row {bad})")
        images = self._file()["images"]
        for start in range(0, self.n_jets, _SCAN_ROWS):
            block = images[start : start + _SCAN_ROWS]
            if not np.all(np.isfinite(block)):
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=(1, 2)))[0])
                raise SchemaError(f"{self.path}: dataset 'images' has NaN/inf pixels (first at row {bad})")
            if (block < 0).any():
                bad = start + int(np.flatnonzero((block < 0).any(axis=(1, 2)))[0])
                raise SchemaError(
                    f"{self.path}: dataset 'images' has negative pixels (first at row {bad}); "
                    "pixels are summed pT >= 0"
                )


class JetDataset:
    """Several jet files read as one dataset (rows concatenated in the given order)."""

    def __init__(self, files: Sequence[JetFile]):
        if not files:
            raise SchemaError("no input files given")
        shapes = {f.image_shape for f in files}
        if len(shapes) > 1:
            raise SchemaError(
                f"input files have different image shapes {sorted(shapes)}: "
                + ", ".join(f"{f.path}: {f.image_shape}" for f in files)
            )
        self.files = list(files)
        self.image_shape = files[0].image_shape
        self.offsets = np.cumsum([0] + [len(f) for f in files])
        self.n_jets = int(self.offsets[-1])

    def __len__(self) -> int:
        return self.n_jets

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([f.column(name) for f in self.files])

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """Images at global `rows` (any order, repeats allowed), (len(rows), H, W) float32."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.image_shape), dtype=np.float32)
        file_of_row = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(file_of_row):
            take = np.flatnonzero(file_of_row == k)
            local = rows[take] - self.offsets[k]
            unique, inverse = np.unique(local, return_inverse=True)
            lo, hi = int(unique[0]), int(unique[-1]) + 1
            if hi - lo <= 4 * len(unique):  # dense enough: one contiguous read beats fancy indexing
                block = self.files[k].read_images(slice(lo, hi))[unique - lo]
            else:
                block = self.files[k].read_images(unique)
            out[take] = block[inverse]
        return out

    def validate(self) -> None:
        for f in self.files:
            f.validate()


def expand_paths(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files from paths, directories (their *.h5) and glob patterns, sorted within each input."""
    paths: list[Path] = []
    for item in inputs:
        item = str(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                raise SchemaError(f"{item}: the pattern matches no file")
            paths.extend(Path(m) for m in matches)
        elif Path(item).is_dir():
            matches = sorted(Path(item).glob("*.h5"))
            if not matches:
                raise SchemaError(f"{item}: the directory holds no .h5 file")
            paths.extend(matches)
        else:
            paths.append(Path(item))
    return paths


def open_dataset(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> JetDataset:
    """Open one file, a directory, a glob, or a list of them as one `JetDataset`."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    return JetDataset([JetFile(p) for p in expand_paths(inputs)])


def dataset_info(dataset: JetDataset) -> dict:
    """Jet counts and mass quantiles (10/25/50/75/90 %, GeV) per process."""
    process = dataset.column("process")
    mass = dataset.column("mass")
    per_process = {}
    for name in sorted(set(process)):
        m = mass[process == name]
        per_process[name] = {
            "jets": int(len(m)),
            "mass_quantiles_gev": dict(
                zip(("q10", "q25", "q50", "q75", "q90"),
                    np.round(np.quantile(m, [0.1, 0.25, 0.5, 0.75, 0.9]), 1).tolist(), strict=True)
            ),
        }
    return {
        "files": [str(p) for p in dataset.paths],
        "jets": dataset.n_jets,
        "image_shape": list(dataset.image_shape),
        "processes": per_process,
    }


def merge_files(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, config: dict | None = None
) -> Path:
    """Concatenate jet files into one, atomically; refuses duplicated jets (same process, seed, event).

    `config` is stored as the merged file's settings (default: the first input's).

    Images are copied in chunks, so memory stays O(chunk) in the image size.
    """
    dataset = open_dataset(inputs)
    shared = [name for name in COLUMNS if all(name in f.columns for f in dataset.files)]
    columns = {name: dataset.column(name) for name in shared}
    if {"seed", "event_index"} <= set(columns):
        key = np.rec.fromarrays(
            [columns["process"].astype("S16"), columns["seed"], columns["event_index"]]
        )
        real = columns["seed"] >= 0
        _, counts = np.unique(key[real], return_counts=True)
        if (counts > 1).any():
            raise SchemaError(
                f"merge would duplicate {int((counts > 1).sum())} jets (same process, seed and event); "
                "were the same shards given twice?"
            )
    output = Path(output)
    sources = [{"path": str(f.path), "jets": len(f), "config": f.config} for f in dataset.files]
    n = dataset.n_jets
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        images = out.create_dataset(
            "images", shape=(n, *dataset.image_shape), dtype=np.float32,
            chunks=(max(1, min(n, _CHUNK_ROWS)), *dataset.image_shape),
            compression="gzip", compression_opts=4, shuffle=True,
        )
        for f, start in zip(dataset.files, dataset.offsets[:-1], strict=True):
            for lo in range(0, len(f), _SCAN_ROWS):
                hi = min(len(f), lo + _SCAN_ROWS)
                images[start + lo : start + hi] = f.read_images(slice(lo, hi))
        for name, dtype in COLUMNS.items():
            values = columns.get(name, np.full(n, _DEFAULTS.get(name, 0), dtype=dtype))
            out.create_dataset(name, data=np.asarray(values).astype(dtype))
        out.attrs["nurdad_schema_version"] = SCHEMA_VERSION
        out.attrs["config"] = json.dumps(config or dataset.files[0].config, sort_keys=True)
        out.attrs["provenance"] = json.dumps(provenance(), sort_keys=True)
        out.attrs["sources"] = json.dumps(sources, sort_keys=True)
    return output
