"""ONNX export: encoder + Mahalanobis score as one graph, checked against PyTorch with onnxruntime.

The graph takes unit-sum jet images ``images`` (batch, 1, H, W) float32 (the pixel transform runs
inside it) and returns ``score`` (batch,), the NURD-MD score (higher = more anomalous), and
``distances`` (batch, K), the squared Mahalanobis distance to each background class. The batch axis
is dynamic. Written by torch's torch.export-based exporter (needs onnxscript).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from nurdad import __version__
from nurdad.export.base import ExportConfig, quiet, require, versions
from nurdad.export.modules import DetectorModel
from nurdad.io import atomic_path

log = logging.getLogger(__name__)

FILENAME = "nurdad_detector.onnx"
INPUTS = ("images",)
OUTPUTS = ("score", "distances")


def toy_check_images(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """(n, 1, H, W) float32 sparse unit-sum toy images (about 5% of pixels lit); not physics."""
    rng = np.random.default_rng(seed)
    images = rng.exponential(1.0, (n, 1, *shape)) * (rng.random((n, 1, *shape)) < 0.05)
    images[:, 0, shape[0] // 2, shape[1] // 2] += 5.0  # a hard core, as in a real jet
    return (images / images.sum(axis=(2, 3), keepdims=True)).astype(np.float32)


def export(run, out_dir: Path, config: ExportConfig) -> dict:
    """Write `out_dir`/nurdad_detector.onnx for a loaded NuRD run; return what export.json records."""
    onnx = require("onnx", "ONNX export")
    ort = require("onnxruntime", "checking the ONNX export")
    require("onnxscript", "ONNX export (torch.onnx.export with dynamo=True)")
    model = DetectorModel(run.model, run.detector)
    start = time.perf_counter()
    example = torch.from_numpy(toy_check_images(2, run.image_shape, config.seed))
    with quiet("torch.onnx", "torch.export", "onnxscript", "onnx_ir"):
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=config.opset, input_names=list(INPUTS),
            output_names=list(OUTPUTS), dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False, verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {
        "nurdad_version": __version__, "run_dir": str(run.run_dir),
        "classes": ",".join(model.head.class_names),
        "score": "NURD-MD: min over classes of the squared Mahalanobis distance; higher = anomalous",
    })
    onnx.checker.check_model(proto)
    path = Path(out_dir) / FILENAME
    with atomic_path(path) as tmp:
        onnx.save_model(proto, tmp)
    seconds = time.perf_counter() - start

    images = toy_check_images(config.check_jets, run.image_shape, config.seed + 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {INPUTS[0]: images})
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(images))]
    abs_diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    rel_diff = max(float((np.abs(g - w) / np.abs(w)).max()) for g, w in zip(got, want, strict=True))
    log.info("ONNX: %s in %.1f s; onnxruntime vs torch on %d toy jets: max abs %.2g, max rel %.2g",
             path, seconds, len(images), abs_diff, rel_diff)
    return {
        "file": FILENAME, "opset": config.opset, "export_seconds": round(seconds, 2),
        "versions": versions("onnx", "onnxruntime", "onnxscript"),
        "inputs": {"images": f"float32 (batch, 1, {run.image_shape[0]}, {run.image_shape[1]}) "
                             "unit-sum pT images; the pixel transform is inside the graph"},
        "outputs": {"score": "float32 (batch,) NURD-MD, higher = more anomalous",
                    "distances": f"float32 (batch, {model.head.n_classes}) squared Mahalanobis "
                                 f"distances to {model.head.class_names}"},
        "check": {"jets": len(images), "max_abs_diff": abs_diff, "max_rel_diff": rel_diff,
                  "reference": "torch float32 DetectorModel, same toy images"},
    }


def summary(record: dict) -> str:
    """One line for the CLI."""
    check = record["check"]
    return (f"onnx: {record['file']} (opset {record['opset']}, {record['export_seconds']:.1f} s); "
            f"onnxruntime vs torch on {check['jets']} toy jets: max abs {check['max_abs_diff']:.2g}, "
            f"max rel {check['max_rel_diff']:.2g}")
