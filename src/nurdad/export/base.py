"""What every exporter shares: its options, the optional-dependency guard and the run check."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from nurdad.errors import ConfigError, NurdadError
from nurdad.io import package_versions

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[export]"'
FIXED_POINT = re.compile(r"^ap_fixed<(\d+),(-?\d+)(,[A-Z_]+)*>$")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18                          # ONNX opset of the torch.export-based exporter
    check_jets: int = 32                     # toy images on which the ONNX graph is checked vs torch
    # hls4ml: fixed-point candidates, scanned; the narrowest one within max_auroc_drop is chosen
    precisions: tuple[str, ...] = ("ap_fixed<16,6>", "ap_fixed<18,8>", "ap_fixed<24,10>")
    max_auroc_drop: float = 0.01             # allowed AUROC loss (float - fixed) for every anomaly
    per_layer: bool = True                   # if needed, also try per-layer integer bits (narrower W)
    data: tuple[str, ...] = ()               # jets for calibration and AUROC; () = the run's data
    max_jets_per_process: int = 200          # emulation takes ~50 ms/jet: subsample each process
    io_type: str = "io_stream"               # hls4ml I/O: 'io_stream' is the one for CNNs
    backend: str = "Vitis"                   # hls4ml backend that writes the project (no vendor tools)
    seed: int = 0                            # subsampling and toy images

    def __post_init__(self):
        for name in ("opset", "check_jets", "max_jets_per_process"):
            if getattr(self, name) < 1:
                raise ConfigError(f"export.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.precisions:
            raise ConfigError("export.precisions: expected at least one, e.g. 'ap_fixed<16,6>'")
        for precision in self.precisions:
            fixed_point_bits(precision)
        if not 0 <= self.max_auroc_drop < 1:
            raise ConfigError(f"export.max_auroc_drop: expected in [0, 1), got {self.max_auroc_drop}")
        if self.io_type not in ("io_stream", "io_parallel"):
            raise ConfigError(f"export.io_type: expected 'io_stream' or 'io_parallel', got {self.io_type!r}")


def fixed_point_bits(precision: str) -> tuple[int, int]:
    """(total width W, integer bits I incl. sign) of 'ap_fixed<W,I[,Q,O]>'; ConfigError otherwise."""
    match = FIXED_POINT.match(precision.replace(" ", ""))
    if not match or not 0 < int(match[2]) <= int(match[1]):
        raise ConfigError(f"export.precisions: expected 'ap_fixed<W,I>' with 0 < I <= W, got {precision!r}")
    return int(match[1]), int(match[2])


def require(module: str, purpose: str):
    """Import an optional dependency, or a NurdadError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NurdadError(f"{purpose} needs the '{module}' package: {INSTALL_HINT}") from None


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of the exporter's packages, for its record."""
    return package_versions(packages)


def check_exportable(run) -> None:
    """Only NuRD runs (encoder + Mahalanobis detector) export; a clear error for anything else."""
    if run.kind != "nurd":
        raise NurdadError(f"{run.run_dir}: export needs a NuRD run (encoder + Mahalanobis detector), "
                          f"this is a '{run.kind}' run")
    if run.detector is None:
        raise NurdadError(f"{run.run_dir}: no detector.json; is the run finished?")


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Silence chatty exporters: their loggers below ERROR, their warnings, and their stdout prints
    (hls4ml prints its topology), which go to this module's debug log instead."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    printed = io.StringIO()
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if printed.getvalue():
            log.debug("exporter output:\n%s", printed.getvalue().rstrip())
