"""Model export of a trained NuRD run: ONNX (any runtime) and hls4ml (FPGA firmware emulation).

An exporter is a module with ``export(run, out_dir, config) -> dict`` (the record written to
``export.json``) and ``summary(record) -> str`` (for the CLI). `EXPORTERS` names them; adding a
format is one entry, and the CLI offers a ``--<name>`` flag for each. Modules are imported only when
used, so the optional packages (onnx, onnxruntime, onnxscript, hls4ml) and torch stay unloaded
until an export runs: ``pip install -e ".[export]"``.

The torch modules behind both formats are in `nurdad.export.modules` (`MahalanobisHead`,
`DetectorModel`) and `nurdad.export.hls` (`FirmwareModel`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from nurdad.errors import ConfigError
from nurdad.export.base import ExportConfig, check_exportable
from nurdad.io import provenance, write_json

EXPORTERS: dict[str, str] = {"onnx": "nurdad.export.onnx", "hls4ml": "nurdad.export.hls"}
RECORD = "export.json"

__all__ = ["EXPORTERS", "ExportConfig", "export_run", "exporter"]


def exporter(name: str):
    """The exporter module registered as `name`."""
    if name not in EXPORTERS:
        raise ConfigError(f"export format: expected one of {sorted(EXPORTERS)}, got {name!r}")
    return importlib.import_module(EXPORTERS[name])


def export_run(run_dir: str | os.PathLike, formats: Sequence[str], out_dir: str | os.PathLike | None = None,
               config: ExportConfig | None = None) -> dict:
    """Export the run in `run_dir` to each of `formats` under `out_dir` (default `run_dir`/export).

    `config` None means `ExportConfig()`. Returns the export.json content: one record per format
    (records of formats not rerun are kept), the run, its classes and provenance.
    """
    from nurdad.scoring import load_run

    if not formats:
        raise ConfigError(f"export: choose at least one format of {sorted(EXPORTERS)}")
    modules = {name: exporter(name) for name in formats}
    config = config or ExportConfig()
    run = load_run(run_dir)
    check_exportable(run)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for name, module in modules.items():
        record[name] = module.export(run, out_dir, config)
    record.update(run_dir=str(run.run_dir), classes=list(run.classes), provenance=provenance())
    write_json(record_path, record)
    return record
