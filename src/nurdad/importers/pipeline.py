"""Convert public jet files into one nurdad jet file, chunk by chunk, with `nurdad generate`'s images.

Every chunk goes through the same steps as simulated jets: constituents -> `jet_four_vectors` (massless
sum: jet pT, eta, phi, mass) -> `jet_images` around that axis with the given `ImageConfig`. Jet columns
the source provides (e.g. hls4ml's ``j_mass``) replace the four-vector ones when
``kinematics='dataset'``; ``'constituents'`` uses the four-vector sum for all of them, so the nuisance
describes exactly the jet the image shows (e.g. JetNet-30 masses are those of the untruncated jet).

Imported jets get seed = -1, event_index = the row in their source file, tau21 = tau32 = NaN and
truth_matched = True. The output is written incrementally (O(chunk) memory) into a temporary file that
is renamed into place only when the whole import succeeded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from nurdad.config import to_dict
from nurdad.data import COLUMNS, SCHEMA_VERSION
from nurdad.errors import ConfigError, SchemaError
from nurdad.images import ImageConfig, jet_images
from nurdad.importers.base import GIVEN_COLUMNS, IMPORTERS, Importer, RawJets
from nurdad.io import atomic_path, provenance
from nurdad.kinematics import jet_four_vectors

log = logging.getLogger(__name__)

KINEMATICS = ("dataset", "constituents")
_IMAGE_CHUNK_ROWS = 256  # HDF5 chunk of the images dataset, as in files written by write_jets


def source_files(importer: Importer, source: str | os.PathLike) -> list[Path]:
    """`source` itself, or the files of directory `source` ending in the importer's suffixes, sorted."""
    source = Path(source)
    if not source.is_dir():
        return [source]
    files = sorted(p for p in source.iterdir() if p.is_file() and p.name.endswith(importer.suffixes))
    if not files:
        raise SchemaError(f"{source}: the directory holds no {' or '.join(importer.suffixes)} file "
                          f"for format {importer.name!r}")
    return files


def jet_columns(raw: RawJets, kinematics: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """nurdad columns of a chunk, plus the (n,) image axis eta and phi (the four-vector axis)."""
    four = jet_four_vectors(raw.constituents)
    columns = {name: four[name] for name in ("mass", "pt", "eta", "phi")}
    columns["n_constituents"] = (raw.constituents[..., 0] > 0).sum(axis=1)
    assert set(raw.given) <= set(GIVEN_COLUMNS), f"unexpected given columns {sorted(raw.given)}"
    if kinematics == "dataset":
        columns.update(raw.given)
    n = len(raw.process)
    columns.update(
        process=raw.process, tau21=np.full(n, np.nan), tau32=np.full(n, np.nan),
        truth_matched=np.ones(n, dtype=bool), seed=np.full(n, -1),
        event_index=raw.first_row + np.arange(n),
    )
    return columns, four["eta"], four["phi"]


class _JetFileWriter:
    """Appends (images, columns) chunks to an open h5py file in nurdad's schema (resizable datasets)."""

    def __init__(self, handle: h5py.File, size: int):
        self.handle = handle
        self.n = 0
        handle.create_dataset("images", shape=(0, size, size), maxshape=(None, size, size),
                              dtype=np.float32, chunks=(_IMAGE_CHUNK_ROWS, size, size),
                              compression="gzip", compression_opts=4, shuffle=True)
        for name, dtype in COLUMNS.items():
            handle.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=True)

    def append(self, images: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        assert set(columns) == set(COLUMNS), f"columns {sorted(set(COLUMNS) ^ set(columns))} differ"
        lo, hi = self.n, self.n + len(images)
        for name, values in [("images", images), *columns.items()]:
            dataset = self.handle[name]
            dataset.resize(hi, axis=0)
            dataset[lo:hi] = np.asarray(values).astype(dataset.dtype)
        self.n = hi


def import_dataset(
    fmt: str,
    source: str | os.PathLike,
    output: str | os.PathLike,
    images: ImageConfig | None = None,
    max_jets: int | None = None,
    kinematics: str = "dataset",
    chunk_rows: int = 2048,
) -> dict:
    """Import `source` (a file, or a directory of files) of format `fmt` into the nurdad file `output`.

    Parameters
    ----------
    fmt : a key of `IMPORTERS` ('hls4ml', 'jetnet', 'toptagging').
    images : pixelization and preprocessing (default `ImageConfig()`, that of `nurdad generate`).
    max_jets : stop after this many jets (in file order), all by default.
    kinematics : 'dataset' (jet columns the source gives win) or 'constituents' (four-vector sums).
    chunk_rows : source rows read and converted at a time.

    Returns
    -------
    dict with 'output', 'jets', 'processes' (jets per process) and 'files' (jets per source file).
    """
    if fmt not in IMPORTERS:
        raise ConfigError(f"format: expected one of {sorted(IMPORTERS)}, got {fmt!r}")
    if kinematics not in KINEMATICS:
        raise ConfigError(f"kinematics: expected one of {KINEMATICS}, got {kinematics!r}")
    if max_jets is not None and max_jets < 1:
        raise ConfigError(f"max_jets: expected an integer >= 1, got {max_jets}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows: expected an integer >= 1, got {chunk_rows}")
    importer = IMPORTERS[fmt]
    images = images or ImageConfig()
    files = source_files(importer, source)
    output = Path(output)
    limit = max_jets if max_jets is not None else np.inf
    processes: Counter[str] = Counter()
    per_file: list[dict] = []
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as handle:
        writer = _JetFileWriter(handle, images.size)
        for path in files:
            start = writer.n
            # closing(): a reader stopped early by max_jets closes its source file now
            with contextlib.closing(importer.read(path, int(min(chunk_rows, limit - writer.n)))) as chunks:
                for raw in chunks:
                    keep = int(min(len(raw.process), limit - writer.n))
                    if keep < len(raw.process):
                        raw = RawJets(raw.first_row, raw.constituents[:keep], raw.process[:keep],
                                      {k: v[:keep] for k, v in raw.given.items()})
                    columns, axis_eta, axis_phi = jet_columns(raw, kinematics)
                    writer.append(jet_images(raw.constituents, axis_eta, axis_phi, images), columns)
                    processes.update(raw.process.tolist())
                    if writer.n >= limit:
                        break
            per_file.append({"path": str(path), "jets": writer.n - start})
            log.info("%s: %d jets imported", path, writer.n - start)
            if writer.n >= limit:
                break
        if writer.n == 0:
            raise SchemaError(f"{source}: no jets to import")
        config = {"import": {"format": fmt, "source": str(source), "max_jets": max_jets,
                             "kinematics": kinematics}, "images": to_dict(images)}
        handle.attrs["nurdad_schema_version"] = SCHEMA_VERSION
        handle.attrs["config"] = json.dumps(config, sort_keys=True)
        handle.attrs["provenance"] = json.dumps(provenance(), sort_keys=True)
        handle.attrs["sources"] = json.dumps(per_file)
        n_jets = writer.n
    return {"output": str(output), "jets": n_jets, "processes": dict(sorted(processes.items())),
            "files": per_file}
