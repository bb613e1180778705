"""`nurdad train`: data splits, the epoch loop, checkpoints, model selection and the run directory.

One loop serves NuRD (`nurdad.nurd.objective`) and the autoencoder baseline (`nurdad.baseline`).
It runs unchanged in one process or under ``torchrun`` (DistributedDataParallel: each rank takes a
slice of every global batch; see `nurdad.data.stream`).

Run directory
-------------
config.json       resolved configuration, data files, class names
provenance.json   versions, git commit, host, seeds
split.npz         per-row split of the data (0 train, 1 val, 2 test) and the nuisance standardization
weights.png       nuisance distributions per class before/after the importance weights (NuRD)
checkpoint.pt     last completed epoch: weights, optimizers, RNG states, history (for --resume)
history.csv       per-epoch training and validation metrics
model.pt          selected (best validation) weights and what scoring needs
detector.json     Mahalanobis statistics of the training backgrounds (NuRD)
summary.json      parameter and MAC counts, best epoch, fresh-critic dependence estimate, timings
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nurdad import __version__
from nurdad.baseline import AutoencoderObjective, BaselineConfig
from nurdad.config import to_dict
from nurdad.data import COLUMNS, JetDataset, open_dataset
from nurdad.data.stream import JetBatches
from nurdad.distributed import rank_and_world
from nurdad.errors import ConfigError, RunDirError, SchemaError, TrainingDivergedError
from nurdad.io import atomic_path, load_torch, provenance, read_json, run_dir_lock, save_torch, write_json
from nurdad.nurd.objective import NurdConfig, NurdObjective
from nurdad.nurd.weights import WeightConfig, nuisance_weights, plot_weight_diagnostic

log = logging.getLogger(__name__)

RUN_FORMAT = 1
MODELS = ("nurd", "ae")
TRAIN, VAL, TEST = 0, 1, 2


@dataclass(frozen=True)
class TrainConfig:
    model: str = "nurd"                          # 'nurd' (NuRD encoder) | 'ae' (autoencoder baseline)
    backgrounds: tuple[str, ...] = ("qcd", "wz")  # labelled background processes = classes, in order
    nuisance: tuple[str, ...] = ("mass",)         # columns the representation must not depend on
    epochs: int = 10
    batch_size: int = 256                        # global batch (summed over ranks)
    lr: float = 1e-3                             # Adam learning rate of the encoder / autoencoder
    seed: int = 0                                # initialization, batch order, splits
    val_fraction: float = 0.15                   # per process
    test_fraction: float = 0.25                  # per process; anomalies are never trained on
    min_class_jets: int = 50                     # fewer training jets in a background class is an error
    in_memory_gb: float = 4.0                    # preload images below this size, else stream from HDF5
    device: str = "cpu"                          # 'cpu' | 'cuda' | 'cuda:N'
    fresh_critic_epochs: int = 30                # final honest dependence check (NuRD)
    weights: WeightConfig = WeightConfig()
    nurd: NurdConfig = NurdConfig()
    baseline: BaselineConfig = BaselineConfig()

    def __post_init__(self):
        if self.model not in MODELS:
            raise ConfigError(f"train.model: expected one of {MODELS}, got {self.model!r}")
        if self.model == "nurd" and len(self.backgrounds) < 2:
            raise ConfigError(
                f"train.backgrounds: NuRD needs at least 2 background classes, got {list(self.backgrounds)}"
            )
        if len(set(self.backgrounds)) != len(self.backgrounds):
            raise ConfigError(f"train.backgrounds: duplicated names in {list(self.backgrounds)}")
        if not self.nuisance:
            raise ConfigError("train.nuisance: expected at least one column name, e.g. ['mass']")
        for name in ("epochs", "batch_size", "min_class_jets", "fresh_critic_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr: expected > 0, got {self.lr}")
        fractions_ok = 0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
        if not fractions_ok or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"train.val_fraction, train.test_fraction: expected each in (0, 1) with sum < 1, "
                f"got {self.val_fraction} and {self.test_fraction}"
            )
        if not self.device.startswith(("cpu", "cuda")):
            raise ConfigError(f"train.device: expected 'cpu' or 'cuda[:N]', got {self.device!r}")


# ------------------------------------------------------------------------------------------- splits
def make_split(process: np.ndarray, config: TrainConfig) -> np.ndarray:
    """(N,) int8 split per row, stratified by process and seeded: 0 train, 1 val, 2 test."""
    split = np.full(len(process), TRAIN, dtype=np.int8)
    rng = np.random.default_rng([config.seed, 7])
    for name in sorted(set(process)):
        rows = rng.permutation(np.flatnonzero(process == name))
        n_test = int(round(config.test_fraction * len(rows)))
        n_val = int(round(config.val_fraction * len(rows)))
        split[rows[:n_test]] = TEST
        split[rows[n_test : n_test + n_val]] = VAL
    return split


def training_classes(config: TrainConfig) -> tuple[str, ...]:
    """The processes the model learns from: the background classes (NuRD) or `train_on` (AE)."""
    return config.backgrounds if config.model == "nurd" else config.baseline.train_on


@dataclass
class PreparedData:
    dataset: JetDataset
    split: np.ndarray
    labels: np.ndarray           # (N,) class index of each row, -1 for other processes
    nuisance: np.ndarray         # (N, Z) standardized with the training mean/std
    nuisance_mean: np.ndarray
    nuisance_std: np.ndarray
    weights: np.ndarray          # (N,) importance weights (1 outside train/val backgrounds)
    classes: tuple[str, ...]
    raw_nuisance: np.ndarray = field(repr=False)


def prepare_data(config: TrainConfig, data) -> PreparedData:
    """Open, validate and split the data; compute labels, nuisance and importance weights."""
    dataset = data if isinstance(data, JetDataset) else open_dataset(data)
    size, field_name = ((config.nurd.encoder.image_size, "train.nurd.encoder.image_size")
                        if config.model == "nurd" else
                        (config.baseline.autoencoder.image_size, "train.baseline.autoencoder.image_size"))
    if dataset.image_shape != (size, size):
        raise SchemaError(
            f"{', '.join(map(str, dataset.paths))}: images are {dataset.image_shape[0]}x"
            f"{dataset.image_shape[1]} pixels but {field_name} = {size}; set it in --config"
        )
    dataset.validate()
    process = dataset.column("process")
    classes = training_classes(config)
    present = sorted(str(name) for name in set(process))
    for name in classes:
        if name not in present:
            raise SchemaError(
                f"{', '.join(map(str, dataset.paths))}: no jets of process {name!r} (named in "
                f"train.backgrounds); the data has {present}"
            )
    raw = np.stack([_nuisance_column(dataset, name) for name in config.nuisance], axis=1)  # (N, Z)
    split = make_split(process, config)
    labels = np.full(len(process), -1, dtype=np.int64)
    for k, name in enumerate(classes):
        labels[process == name] = k
    train = (split == TRAIN) & (labels >= 0)
    for k, name in enumerate(classes):
        n = int((train & (labels == k)).sum())
        if n < config.min_class_jets:
            raise SchemaError(
                f"process {name!r}: {n} training jets; need at least train.min_class_jets = "
                f"{config.min_class_jets}"
            )
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    weights = np.ones(len(process))
    if config.model == "nurd":
        for part in (TRAIN, VAL, TEST):  # test weights serve the held-out dependence estimate
            rows = (split == part) & (labels >= 0)
            weights[rows] = nuisance_weights(labels[rows], raw[rows], config.weights, seed=config.seed,
                                             n_classes=len(classes))
    return PreparedData(dataset, split, labels, ((raw - mean) / std).astype(np.float32), mean, std,
                        weights, tuple(classes), raw)


def _nuisance_column(dataset: JetDataset, name: str) -> np.ndarray:
    numeric = [column for column, dtype in COLUMNS.items() if dtype.kind in "fi"]
    if name not in numeric:
        raise ConfigError(f"train.nuisance: {name!r} is not a numeric jet column; expected one of {numeric}")
    files = ", ".join(map(str, dataset.paths))
    try:
        values = dataset.column(name).astype(np.float64)
    except SchemaError:
        raise ConfigError(f"train.nuisance: column {name!r} is not in {files}") from None
    if not np.all(np.isfinite(values)):
        raise SchemaError(f"{files}: column {name!r} has NaN/inf values, so it cannot serve as a nuisance")
    return values


def _axis_label(name: str) -> str:
    return {"mass": "jet mass [GeV]", "pt": "jet pT [GeV]"}.get(name, name)


def batches_for(data: PreparedData, part: int, config: TrainConfig, shuffle: bool, rank=0, world=1):
    rows = np.flatnonzero((data.split == part) & (data.labels >= 0))
    arrays = {"labels": data.labels[rows], "nuisance": data.nuisance[rows],
              "weights": data.weights[rows].astype(np.float32)}
    return JetBatches(data.dataset, rows, arrays, config.batch_size, shuffle, seed=config.seed,
                      in_memory_bytes=config.in_memory_gb * 2**30, rank=rank, world_size=world,
                      device=training_device(config))


# ---------------------------------------------------------------------------------------- the loop
def training_device(config: TrainConfig) -> torch.device:
    """The device of this rank: config.device, or under torchrun with CUDA the GPU of LOCAL_RANK."""
    if config.device == "cuda" and rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {config.device!r} requested but no CUDA device is available")
    return device


def build_objective(config: TrainConfig, n_classes: int, n_nuisance: int):
    """The model(s) and optimizers of `config.model`, on this rank's device, DDP-wrapped if distributed."""
    world = rank_and_world()[1]
    device = training_device(config)

    def wrap(module):
        if world == 1:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    if config.model == "nurd":
        return NurdObjective(config.nurd, n_classes, n_nuisance, config.lr, config.seed, device=device,
                             wrap=wrap)
    return AutoencoderObjective(config.baseline, config.lr, config.seed, device=device, wrap=wrap)


def _reduce_sums(sums: dict[str, float]) -> dict[str, float]:
    rank, world = rank_and_world()
    if world == 1:
        return sums
    keys = sorted(sums)
    tensor = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def validate_epoch(objective, batches: JetBatches) -> dict[str, float]:
    totals: dict[str, float] = {}
    for batch in batches.epoch(0):
        for key, value in objective.validation_sums(batch).items():
            totals[key] = totals.get(key, 0.0) + value
    totals = _reduce_sums(totals)
    weight = totals.pop("weight")
    return {key: value / weight for key, value in totals.items()}


def _resolved(config: TrainConfig, data: PreparedData) -> dict:
    """The run's identity as stored in config.json (JSON-normalized, so it compares with a reload)."""
    return json.loads(json.dumps({"train": to_dict(config), "data": [str(p) for p in data.dataset.paths],
            "n_jets": data.dataset.n_jets, "classes": list(data.classes), "run_format": RUN_FORMAT,
            "nurdad_version": __version__}))


def _check_run_dir(run_dir: Path, resolved: dict, resume: bool) -> dict | None:
    """The checkpoint to resume from, or None; refuse to overwrite another run."""
    config_path, checkpoint = run_dir / "config.json", run_dir / "checkpoint.pt"
    if not config_path.exists():
        if resume:
            raise RunDirError(f"{run_dir}: nothing to resume (no config.json); drop --resume")
        return None
    stored = read_run_config(run_dir)
    if not resume:
        raise RunDirError(f"{run_dir}: already holds a run; use --resume to continue it or another --out")
    if stored != resolved:
        changed = sorted(k for k in resolved if stored.get(k) != resolved[k])
        raise RunDirError(f"{run_dir}: --resume with different settings ({', '.join(changed)}); "
                          "use the original command")
    return load_torch(checkpoint) if checkpoint.exists() else None


def read_run_config(run_dir: Path) -> dict:
    """A run dir's config.json, checked to be of this nurdad's run format (else `RunDirError`)."""
    stored = read_json(run_dir / "config.json")
    if stored.get("run_format") != RUN_FORMAT:
        raise RunDirError(f"{run_dir}: run format {stored.get('run_format')} is not this nurdad's "
                          f"({RUN_FORMAT}); train again into a new run dir")
    missing = sorted({"train", "data", "n_jets", "classes"} - set(stored))
    if missing:
        raise RunDirError(f"{run_dir / 'config.json'}: no {missing}; train again into a new run dir")
    return stored


def _write_history(history: list[dict], path: Path) -> None:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def train(config: TrainConfig, data, run_dir: str | os.PathLike, resume: bool = False,
          show_progress: bool = True) -> dict:
    """Train a model into `run_dir`; returns the summary. See the module docstring for the outputs."""
    run_dir = Path(run_dir)
    rank, world = rank_and_world()
    if world > 1 and config.batch_size % world:
        raise ConfigError(f"train.batch_size: {config.batch_size} is not divisible by {world} ranks")
    with run_dir_lock(run_dir) if rank == 0 else contextlib.nullcontext():
        return _train_locked(config, data, run_dir, resume, show_progress and rank == 0, rank, world)


def _train_locked(config, data, run_dir, resume, show_progress, rank, world) -> dict:
    torch.use_deterministic_algorithms(True, warn_only=True)
    prepared = prepare_data(config, data)
    resolved = _resolved(config, prepared)
    checkpoint = _check_run_dir(run_dir, resolved, resume) if rank == 0 else None
    if world > 1:
        torch.distributed.barrier()  # rank 0 has checked the run dir and written its records
        if rank > 0 and resume and (run_dir / "checkpoint.pt").exists():
            checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    if rank == 0 and checkpoint is None:
        write_json(run_dir / "config.json", resolved)
        write_json(run_dir / "provenance.json", {**provenance(), "seed": config.seed, "world_size": world})
        with atomic_path(run_dir / "split.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, split=prepared.split, nuisance_mean=prepared.nuisance_mean,
                     nuisance_std=prepared.nuisance_std)
        if config.model == "nurd":  # only now: a refused run dir keeps its own diagnostic
            rows = (prepared.split == TRAIN) & (prepared.labels >= 0)
            plot_weight_diagnostic(prepared.raw_nuisance[rows, 0], prepared.labels[rows],
                                   prepared.weights[rows], prepared.classes, run_dir / "weights.png",
                                   nuisance_name=_axis_label(config.nuisance[0]))
    train_batches = batches_for(prepared, TRAIN, config, shuffle=True, rank=rank, world=world)
    val_batches = batches_for(prepared, VAL, config, shuffle=False, rank=rank, world=world)
    objective = build_objective(config, len(prepared.classes), prepared.nuisance.shape[1])
    history, best, start_epoch = [], {"selection": math.inf, "epoch": -1, "state": None}, 0
    if checkpoint is not None:
        objective.load_state_dict(checkpoint["objective"])
        history, best, start_epoch = checkpoint["history"], checkpoint["best"], checkpoint["epoch"] + 1
        torch.set_rng_state(checkpoint["torch_rng"])
        log.info("resuming %s after epoch %d", run_dir, checkpoint["epoch"])
    else:
        objective.begin(train_batches)
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        row = _run_epoch(objective, train_batches, epoch, config, show_progress, run_dir)
        row.update({f"val_{k}": v for k, v in validate_epoch(objective, val_batches).items()})
        row["val_selection"] = objective.selection({k[4:]: v for k, v in row.items() if k.startswith("val_")})
        if not math.isfinite(row["val_selection"]):  # e.g. the epoch's last step left NaN weights
            raise _diverged(f"epoch {epoch + 1}: validation loss", row["val_selection"], run_dir)
        history.append(row)
        if row["val_selection"] < best["selection"]:
            best = {"selection": row["val_selection"], "epoch": epoch,
                    "state": copy.deepcopy(objective.model_state())}  # state_dict() aliases live weights
        if rank == 0:
            save_torch({"epoch": epoch, "objective": objective.state_dict(), "history": history, "best": best,
                        "torch_rng": torch.get_rng_state()}, run_dir / "checkpoint.pt")
            _write_history(history, run_dir / "history.csv")
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    train_seconds = time.perf_counter() - started
    from nurdad.scoring import finalize_run  # scoring imports the models; keep start-up light

    return finalize_run(config, prepared, objective, best, history, run_dir, train_seconds, rank, world)


def _run_epoch(objective, batches: JetBatches, epoch: int, config: TrainConfig, show_progress: bool,
               run_dir: Path) -> dict:
    sums: dict[str, float] = {}
    n_batches = 0
    epoch_start = time.perf_counter()
    bar = tqdm(batches.epoch(epoch), total=len(batches), desc=f"epoch {epoch + 1}/{config.epochs}",
               unit="batch", disable=not show_progress, leave=False)
    for b, batch in enumerate(bar):
        losses = objective.train_step(batch, batches)
        if not all(math.isfinite(v) for v in losses.values()):
            raise _diverged(f"epoch {epoch + 1}, batch {b}: loss", losses, run_dir)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value
        n_batches += 1
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
    seconds = time.perf_counter() - epoch_start
    row = {"epoch": epoch + 1, "seconds": seconds, "jets_per_second": len(batches.rows) / seconds}
    row.update({f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()})
    return row


def _diverged(what: str, value, run_dir: Path) -> TrainingDivergedError:
    """The error for a non-finite loss, naming the checkpoint that survives (if any)."""
    checkpoint = run_dir / "checkpoint.pt"
    kept = (f"the last good checkpoint is {checkpoint}" if checkpoint.exists()
            else "no epoch had finished, so there is no checkpoint")
    return TrainingDivergedError(f"{what} became {value}; {kept} (lower train.lr or nurd.lambda_penalty)")
