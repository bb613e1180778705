"""FPGA export with hls4ml: the encoder and the Mahalanobis score as fixed-point firmware.

What runs where
---------------
- Preprocessing, outside the firmware: the pixel transform (``sqrt`` by default) of the unit-sum
  image, then channels-last layout (B, H, W, 1). An FPGA would take these as its input words.
- Firmware (converted by hls4ml, compiled with g++ into its bit-accurate C++ emulation, run with
  ``predict``): the encoder body (conv3x3-ReLU-maxpool blocks, flatten, dense layers) -> r (D), then
  for each background class k a Dense D -> D (weights L, bias -mu_k L: the folded detector), an
  elementwise square (hls4ml Merge 'multiply' of the stream with itself), a Dense D -> 1 with all
  weights 1 (the sum) giving d_k, and a chain of Merge 'minimum' giving score = min_k d_k (B, 1).
  No post-processing: the emulated output is the NURD-MD score itself.
- Not measured here: resources (LUT, FF, DSP, BRAM), latency and initiation interval. They need
  Vivado/Vitis HLS synthesis (``build_prj.tcl`` in each project directory), not installed here;
  the projects use hls4ml's defaults (Latency strategy, reuse factor 1), not tuned for a device.

Fixed-point precision
---------------------
Ranges (max |value| of every layer's output, weights and biases) come from the float model on the
evaluation jets. Two ways to type the layers, both at one total width W:

- uniform: a candidate ``ap_fixed<W,I>`` is the type of every weight, bias, accumulator and output,
  except where the range would not fit (|x| >= 2^(I-1)); there the layer gets just enough integer
  bits (plus one of headroom for outputs) with rounding and saturation, ``ap_fixed<W,I',AP_RND,
  AP_SAT>``. Mostly the distance layers (d_k ~ D for background, far more for anomalies) and L.
- per-layer: every layer gets the integer bits its range needs, fewer as well as more, so small
  activations keep more fraction bits. Needed in practice: a 3-epoch run on simulated jets has r
  within +-13 but within-class standard deviations down to 4e-3 (L up to 90), and L amplifies
  whatever rounding r carries; uniform types also truncate (AP_TRN) every product, a bias that
  grows with the 1152 inputs of the first dense layer.

Dense/Conv accumulators are retyped with their layer: enough integer bits that no sum of inputs
within their (saturating) types can overflow (|input| range times the largest row sum of |weights|,
plus the bias: the partial sums of r L - mu L are far larger than their total), and 4 more fraction
bits than the output. So anything beyond the calibrated range saturates instead of wrapping.

Each trial is compiled and emulated on the evaluation jets; the narrowest one whose AUROC (each
anomaly vs the pooled backgrounds) is at most `max_auroc_drop` below the float model's is chosen
(see `export` for the order of the trials).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from nurdad.data import open_dataset
from nurdad.errors import NurdadError
from nurdad.export.base import ExportConfig, fixed_point_bits, quiet, require, versions
from nurdad.export.modules import DetectorModel
from nurdad.metrics import auroc

log = logging.getLogger(__name__)

PROJECT_NAME = "nurdad_detector"
INPUT = "x"  # the argument of FirmwareModel.forward: hls4ml names its input layer after it
SATURATING = "ap_fixed<{width},{integer},AP_RND,AP_SAT>"
ACCUM_GUARD_BITS = 4  # fraction bits a retyped Dense/Conv accumulator has beyond its output
PREDICT_CHUNK = 256  # jets per hls4ml predict call (memory only)


# -------------------------------------------------------------------------------------------- firmware
@functools.cache
def hls4ml_ops() -> SimpleNamespace:
    """hls4ml, plus leaf modules (and their converters) for the two firmware ops it has no torch
    module for: `Square` (x -> x * x) and `Minimum` ((a, b) -> min(a, b)), both hls4ml Merge layers."""
    hls4ml = require("hls4ml", "hls4ml export")
    from hls4ml.converters.pytorch_to_hls import (
        get_supported_pytorch_layers,
        register_pytorch_layer_handler,
    )
    from hls4ml.utils.torch import HLS4MLModule

    class NurdadSquare(HLS4MLModule):
        def forward(self, x):
            return x * x

    class NurdadMinimum(HLS4MLModule):
        def forward(self, a, b):
            return torch.minimum(a, b)

    def merge(op: str):
        def parse(_operation, layer_name, input_names, input_shapes, *_args):
            inputs = input_names * 2 if len(input_names) == 1 else input_names  # x * x: x twice
            return {"class_name": "Merge", "name": layer_name, "op": op, "inputs": inputs}, input_shapes[0]
        return parse

    for cls, op in ((NurdadSquare, "multiply"), (NurdadMinimum, "minimum")):
        if cls.__name__ not in get_supported_pytorch_layers():
            register_pytorch_layer_handler(cls.__name__, merge(op))
    return SimpleNamespace(hls4ml=hls4ml, Square=NurdadSquare, Minimum=NurdadMinimum)


class FirmwareModel(nn.Module):
    """The firmware graph in float: transformed images (B, 1, H, W) -> score (B, 1).

    Same function as `DetectorModel` after its pixel transform, written with layers hls4ml maps to
    hardware: per class a Linear D -> D (weight L^T, block k of `MahalanobisHead.project`; bias
    -mu_k L, the head's centre folded in), a square and a Linear D -> 1 of ones, then a chain of
    K - 1 minimums.
    """

    def __init__(self, model: DetectorModel):
        super().__init__()
        ops = hls4ml_ops()
        head = model.head
        k, d = head.n_classes, head.dim
        self.body = model.encoder.body
        self.project = nn.ModuleList(nn.Linear(d, d) for _ in range(k))
        self.square = nn.ModuleList(ops.Square() for _ in range(k))
        self.total = nn.ModuleList(nn.Linear(d, 1, bias=False) for _ in range(k))
        self.nearest = nn.ModuleList(ops.Minimum() for _ in range(k - 1))
        with torch.no_grad():
            for i in range(k):
                block = slice(i * d, (i + 1) * d)
                weight = head.project.weight[block]  # (D, D) = L^T
                self.project[i].weight.copy_(weight)
                # bias -mu_k L: the head's centre folded back in (in float64)
                self.project[i].bias.copy_(head.project.bias[block].double()
                                           - weight.double() @ head.centre.double())
                self.total[i].weight.fill_(1.0)
        self.eval()

    def forward(self, x):
        r = self.body(x)  # (B, D)
        distances = [total(square(project(r)))  # (B, 1) each
                     for project, square, total in zip(self.project, self.square, self.total, strict=True)]
        score = distances[0]
        for nearest, distance in zip(self.nearest, distances[1:], strict=True):
            score = nearest(score, distance)
        return score  # (B, 1)


# ------------------------------------------------------------------------------------------ precision
def _integer_bits(max_abs: float) -> int:
    """Integer bits (incl. sign) of the narrowest signed fixed-point type holding +-max_abs."""
    return 1 if max_abs <= 0 else math.floor(math.log2(max_abs)) + 2


@torch.no_grad()
def value_ranges(firmware: FirmwareModel, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Max |value| per hls4ml layer name ('body.0.0' -> 'body_0_0'; the input layer is `INPUT`).

    Keys: 'result' (output); for Linear/Conv also 'weight', 'bias', 'input' and 'row_abs_sum'
    (the largest sum of |weights| feeding one output).
    """
    ranges: dict[str, dict[str, float]] = {INPUT: {"result": float(x.abs().max())}}
    hooks = []
    for name, module in firmware.named_modules():
        if list(module.children()) or not name:
            continue
        entry = ranges.setdefault(name.replace(".", "_"), {})
        weighted = isinstance(module, nn.Linear | nn.Conv2d)
        if weighted:
            entry["weight"] = float(module.weight.abs().max())
            entry["row_abs_sum"] = float(module.weight.abs().flatten(1).sum(1).max())
            if module.bias is not None:
                entry["bias"] = float(module.bias.abs().max())

        def record(_module, inputs, output, entry=entry, weighted=weighted):
            entry["result"] = max(entry.get("result", 0.0), float(output.abs().max()))
            if weighted:
                entry["input"] = max(entry.get("input", 0.0), float(inputs[0].abs().max()))

        hooks.append(module.register_forward_hook(record))
    try:
        for chunk in torch.split(x, 1024):
            firmware(chunk)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def layer_precisions(ranges: dict[str, dict[str, float]], precision: str,
                     per_layer: bool) -> dict[str, dict[str, str]]:
    """Per-layer types overriding the default `precision` (see the module docstring).

    `per_layer` False: only where the calibrated range does not fit `precision`; True: every layer
    gets the integer bits its range needs, more or fewer than the default's, at the same width.
    Returns {layer: {'weight'|'bias'|'result'|'accum': type}} for the overridden entries.
    """
    width, integer = fixed_point_bits(precision)
    overrides: dict[str, dict[str, str]] = {}
    for layer, entry in ranges.items():
        types = {}
        bits = {kind: _integer_bits(entry[kind]) + (kind == "result")  # headroom for data only
                for kind in ("weight", "bias", "result") if kind in entry}
        for kind, need in bits.items():
            if need > width:
                log.warning("%s: %s reaches %.3g, beyond %d-bit fixed point; it saturates",
                            layer, kind, entry[kind], width)
            if per_layer or need > integer:
                types[kind] = SATURATING.format(width=width, integer=min(need, width))
        if "weight" in entry:
            # no sum of in-range inputs overflows: |acc| <= max|input type| * row_abs_sum + max|bias|
            input_bits = min(_integer_bits(entry["input"]) + 1 if per_layer
                             else max(_integer_bits(entry["input"]) + 1, integer), width)
            accum_bits = _integer_bits(2.0 ** (input_bits - 1) * entry["row_abs_sum"]
                                       + entry.get("bias", 0.0))
            result_bits = min(bits["result"], width) if "result" in types else integer
            if types or accum_bits > integer:
                fraction = width - result_bits + ACCUM_GUARD_BITS
                types["accum"] = SATURATING.format(width=accum_bits + fraction, integer=accum_bits)
        elif "result" in types:
            types["accum"] = types["result"]  # pooling compares in its accumulator type
        if types:
            overrides[layer] = types
    return overrides


def compile_firmware(firmware: FirmwareModel, image_shape, precision: str,
                     overrides: dict[str, dict[str, str]], project_dir: Path, config: ExportConfig):
    """Convert with hls4ml, write the project to `project_dir` and compile its C++ emulation."""
    ops = hls4ml_ops()
    with quiet("hls4ml"):
        hls_config = ops.hls4ml.utils.config_from_pytorch_model(
            firmware, (1, *image_shape), granularity="model", backend=config.backend,
            default_precision=precision, channels_last_conversion="internal",
        )
        hls_config["LayerName"] = {layer: {"Precision": dict(types)} for layer, types in overrides.items()}
        hls_model = ops.hls4ml.converters.convert_from_pytorch_model(
            firmware, output_dir=str(project_dir.resolve()), project_name=PROJECT_NAME,
            backend=config.backend, io_type=config.io_type, hls_config=hls_config,
        )
        unknown = set(overrides) - {layer.name for layer in hls_model.get_layers()}
        assert not unknown, f"hls4ml named the layers differently: {sorted(unknown)} not found"
        try:
            hls_model.compile()
        except Exception as exc:  # hls4ml raises bare Exception when g++ fails
            raise NurdadError(f"{project_dir}: hls4ml could not compile the emulation ({exc}); "
                              "is g++ installed?") from None
    return hls_model


def emulate(hls_model, x: torch.Tensor) -> np.ndarray:
    """Scores (N,) of the compiled emulation on transformed images `x` (N, 1, H, W)."""
    channels_last = x.permute(0, 2, 3, 1).numpy()  # (N, H, W, 1), the firmware's input layout
    with quiet("hls4ml"):
        parts = [np.asarray(hls_model.predict(np.ascontiguousarray(chunk, dtype=np.float32)))
                 for chunk in np.array_split(channels_last, max(1, len(x) // PREDICT_CHUNK))]
    return np.concatenate([p.reshape(len(p), -1)[:, 0] for p in parts]).astype(np.float64)


# ---------------------------------------------------------------------------------------------- data
def evaluation_jets(run, config: ExportConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N, H, W) and process names (N,) for calibration and AUROC, and what they are.

    On the run's own training data only jets never trained on (see `nurdad.evaluate`); at most
    `max_jets_per_process` per process, drawn with `seed`.
    """
    from nurdad.evaluate import evaluation_rows

    files = list(config.data) or list(run.data_files)
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise NurdadError(f"{missing[0]}: not found; pass the jets to calibrate on with --data")
    dataset = open_dataset(files)
    process = dataset.column("process")
    rows, on_training_data = evaluation_rows(run, dataset, process)
    rng = np.random.default_rng(config.seed)
    chosen = []
    for name in sorted(set(process[rows])):
        mine = rows[process[rows] == name]
        chosen.append(rng.choice(mine, min(len(mine), config.max_jets_per_process), replace=False))
    rows = np.sort(np.concatenate(chosen))
    counts = {str(n): int(c) for n, c in zip(*np.unique(process[rows], return_counts=True), strict=True)}
    anomalies = sorted(set(counts) - set(run.classes))
    if not anomalies or not set(run.classes) <= set(counts):
        raise NurdadError(f"{', '.join(map(str, files))}: need jets of the backgrounds {list(run.classes)} "
                          f"and of at least one other process (anomaly) for the AUROC; found {counts}")
    about = {"files": [str(f) for f in files], "rows": "test split + all anomalies" if on_training_data
             else "all jets", "jets": counts, "backgrounds": list(run.classes), "anomalies": anomalies}
    return dataset.read_images(rows), process[rows], about


def aurocs(scores: np.ndarray, process: np.ndarray, backgrounds, anomalies) -> dict[str, float]:
    """AUROC of each anomaly process vs the pooled background jets (higher score = anomalous)."""
    background = scores[np.isin(process, list(backgrounds))]
    return {name: auroc(background, scores[process == name]) for name in anomalies}


def agreement(fixed: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How close the emulated scores are to float: relative errors and rank correlation."""
    rel = np.abs(fixed - reference) / np.maximum(np.abs(reference), 1e-12)
    constant = np.ptp(fixed) == 0 or np.ptp(reference) == 0  # rank correlation undefined: None
    return {"median_rel_err": float(np.median(rel)), "p99_rel_err": float(np.quantile(rel, 0.99)),
            "max_abs_err": float(np.abs(fixed - reference).max()),
            "spearman": None if constant else float(spearmanr(fixed, reference).statistic)}


# -------------------------------------------------------------------------------------------- export
@dataclass
class _Scan:
    """What every precision trial shares: the float model's scores on the evaluation jets."""

    firmware: FirmwareModel
    x: torch.Tensor                 # (N, 1, H, W) transformed images
    process: np.ndarray             # (N,) process names
    float_scores: np.ndarray        # (N,) float32 FirmwareModel
    float_auroc: dict[str, float]   # per anomaly
    ranges: dict[str, dict[str, float]]
    run: object
    out_dir: Path
    config: ExportConfig

    def trial(self, precision: str, per_layer: bool) -> dict:
        """Compile and emulate one precision: AUROC, agreement with float, cost and project."""
        overrides = layer_precisions(self.ranges, precision, per_layer)
        width, integer = fixed_point_bits(precision)
        project = self.out_dir / "hls4ml" / f"ap_fixed_{width}_{integer}{'_per_layer' * per_layer}"
        t0 = time.perf_counter()
        hls_model = compile_firmware(self.firmware, self.run.image_shape, precision, overrides, project,
                                     self.config)
        t1 = time.perf_counter()
        fixed = emulate(hls_model, self.x)
        ms_per_jet = 1e3 * (time.perf_counter() - t1) / len(fixed)
        fixed_auroc = aurocs(fixed, self.process, self.run.classes, self.float_auroc)
        drop = max(self.float_auroc[a] - fixed_auroc[a] for a in fixed_auroc)
        log.info("hls4ml: %s%s AUROC %s (drop %.4f), %d layers set, compile %.0f s, %.0f ms/jet",
                 precision, " per-layer" if per_layer else "", _fmt(fixed_auroc), drop, len(overrides),
                 t1 - t0, ms_per_jet)
        return {
            "precision": precision, "per_layer": per_layer, "width": width, "auroc": fixed_auroc,
            "max_auroc_drop": drop, "meets_target": bool(drop <= self.config.max_auroc_drop),
            "agreement": agreement(fixed, self.float_scores), "layer_overrides": overrides,
            "project": str(project.relative_to(self.out_dir)), "compile_seconds": round(t1 - t0, 1),
            "emulation_ms_per_jet": round(ms_per_jet, 2),
        }


def export(run, out_dir: Path, config: ExportConfig) -> dict:
    """Scan precisions with hls4ml's emulation; projects go to `out_dir`/hls4ml/<precision>.

    Every candidate of `config.precisions` runs as given (uniform); when `config.per_layer`, per-layer
    types are then tried at each candidate width narrower than the narrowest passing uniform one,
    up to the first that passes. The narrowest passing trial is chosen (uniform on a tie).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model = DetectorModel(run.model, run.detector)
    firmware = FirmwareModel(model)
    images, process, about = evaluation_jets(run, config)
    with torch.no_grad():
        x = model.encoder.transform(torch.from_numpy(images).unsqueeze(1))  # (N, 1, H, W)
        float_scores = firmware(x)[:, 0].double().numpy()
    float_auroc = aurocs(float_scores, process, run.classes, about["anomalies"])
    log.info("hls4ml: float AUROC %s on %s", _fmt(float_auroc), about["jets"])
    scan = _Scan(firmware, x, process, float_scores, float_auroc, value_ranges(firmware, x), run, out_dir,
                 config)
    candidates = sorted(config.precisions, key=fixed_point_bits)
    trials = [scan.trial(precision, per_layer=False) for precision in candidates]
    if config.per_layer:
        limit = min((t["width"] for t in trials if t["meets_target"]), default=math.inf)
        widths_tried = set()
        for precision in candidates:
            width = fixed_point_bits(precision)[0]
            if width >= limit or width in widths_tried:
                continue
            widths_tried.add(width)
            trials.append(scan.trial(precision, per_layer=True))
            if trials[-1]["meets_target"]:
                break
    passing = [t for t in trials if t["meets_target"]]
    if passing:
        chosen = min(passing, key=lambda t: (t["width"], t["per_layer"]))
    else:
        chosen = min(trials, key=lambda t: t["max_auroc_drop"])
        log.warning("hls4ml: no precision keeps the AUROC within %.3g of float; best is %s (drop %.4f)",
                    config.max_auroc_drop, chosen["precision"], chosen["max_auroc_drop"])
    return {
        "chosen": {key: chosen[key] for key in ("precision", "per_layer", "project", "meets_target")},
        "max_auroc_drop_allowed": config.max_auroc_drop, "float_auroc": float_auroc, "trials": trials,
        "data": about, "backend": config.backend, "io_type": config.io_type, "versions": versions("hls4ml"),
        "export_seconds": round(time.perf_counter() - start, 1),
        "preprocessing": f"pixel transform '{model.encoder.transform.kind}' of unit-sum images and "
                         "channels-last layout (B, H, W, 1), outside the firmware",
        "firmware": "encoder body -> r; per class Dense D->D (L, -mu_k L), x*x, Dense D->1 (ones); "
                    "Merge minimum over classes -> score (B, 1); no post-processing",
        "float_reference": "torch float32 FirmwareModel (= DetectorModel) on the same jets",
        "not_measured": "FPGA resources (LUT/FF/DSP/BRAM), latency and II need Vivado/Vitis HLS "
                        "synthesis (build_prj.tcl in the project); not run here",
    }


def summary(record: dict) -> str:
    """One line per trial and the choice, for the CLI."""
    lines = [f"hls4ml: float AUROC {_fmt(record['float_auroc'])} on {record['data']['jets']}"]
    for t in record["trials"]:
        lines.append(f"  {t['precision']}{' per-layer' if t['per_layer'] else ''}: AUROC {_fmt(t['auroc'])}, "
                     f"drop {t['max_auroc_drop']:+.4f}, median rel. score error "
                     f"{t['agreement']['median_rel_err']:.2g} -> {t['project']}")
    chosen = record["chosen"]
    verdict = "within" if chosen["meets_target"] else "NOT within"
    lines.append(f"  chosen: {chosen['precision']}{' per-layer' if chosen['per_layer'] else ''} "
                 f"({verdict} {record['max_auroc_drop_allowed']} of float AUROC); "
                 f"resources and latency need Vivado/Vitis HLS synthesis (not run)")
    return "\n".join(lines)


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())
