"""From a trained model to per-jet anomaly scores: run finalization, loading and chunked scoring.

Scores (higher = more anomalous):

- ``nurd_md``: NURD-MD, min over background classes k of the Mahalanobis distance d_k in r(x);
- ``d_<class>``: each d_k;
- ``nurd_ml``: NURD-ML, minus the largest logit;
- ``ae_mse``: the autoencoder's reconstruction error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from nurdad.config import from_dict
from nurdad.data import JetDataset
from nurdad.data.stream import JetBatches
from nurdad.detectors import GaussianStatistics, MahalanobisDetector, MaxLogitDetector
from nurdad.errors import RunDirError, SchemaError
from nurdad.io import atomic_path, load_torch, provenance, read_json, save_torch, write_json
from nurdad.models.encoder import count_macs, count_parameters
from nurdad.nurd.critic import fit_fresh_critic

log = logging.getLogger(__name__)

SCORE_CHUNK_JETS = 65536  # jets per score_dataset call in score_to_file: bounds memory on any dataset


@dataclass
class TrainedRun:
    """A loaded run directory: the model, its detector and what it was trained on."""

    run_dir: Path
    config: object                 # TrainConfig
    classes: tuple[str, ...]
    model: torch.nn.Module         # JetEncoder (NuRD) or ConvAutoencoder (AE), eval mode
    detector: MahalanobisDetector | None
    image_shape: tuple[int, int]
    data_files: list[str]
    n_jets: int

    @property
    def kind(self) -> str:
        return self.config.model

    def split(self) -> np.ndarray:
        return np.load(self.run_dir / "split.npz")["split"]


def _model_from_objective(objective):
    return getattr(objective, "encoder", None) or objective.autoencoder


@torch.no_grad()
def score_batches(run_model, detector, kind: str, batches: JetBatches) -> dict[str, np.ndarray]:
    """Scores of every jet of `batches` (in their row order), chunk by chunk: memory O(batch)."""
    run_model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches.epoch(0):
        if kind == "nurd":
            logits, r = run_model(batch["images"])
            out = {"representation": r.cpu().numpy(), "logits": logits.cpu().numpy()}
        else:
            out = {"ae_mse": run_model.reconstruction_error(batch["images"]).cpu().numpy()}
        out["rows"] = batch["rows"].cpu().numpy()
        for key, value in out.items():
            parts.setdefault(key, []).append(value)
    scores = {key: np.concatenate(values) for key, values in parts.items()}
    if kind == "nurd" and detector is not None:
        distances = detector.distances(scores["representation"])
        scores["nurd_md"] = detector.score(scores["representation"])
        for k, name in enumerate(detector.class_names_):
            scores[f"d_{name}"] = distances[:, k]
        scores["nurd_ml"] = MaxLogitDetector().score(scores["logits"])
    return scores


def score_dataset(run: TrainedRun, dataset: JetDataset, rows: np.ndarray | None = None,
                  batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Score `rows` of `dataset` (all by default) with a loaded run; arrays follow `rows`' order."""
    if tuple(dataset.image_shape) != tuple(run.image_shape):
        raise SchemaError(
            f"{', '.join(map(str, dataset.paths))}: images are {dataset.image_shape}, the model in "
            f"{run.run_dir} was trained on {tuple(run.image_shape)}"
        )
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows)
    batches = JetBatches(dataset, rows, {}, batch_size, shuffle=False, in_memory_bytes=0)
    scores = score_batches(run.model, run.detector, run.kind, batches)
    order = np.argsort(np.argsort(rows, kind="stable"), kind="stable")  # batches walk rows sorted
    return {key: value[order] for key, value in scores.items()}


def score_to_file(run: TrainedRun, dataset: JetDataset, out, batch_size: int = 1024
                  ) -> dict[str, np.ndarray]:
    """Score `dataset` chunk by chunk into HDF5 `out` (atomic); return the (N,) scores.

    Datasets: nurd_md, nurd_ml, d_<class>, representation (N, D) for a NuRD run, ae_mse for an
    autoencoder (higher = more anomalous), plus process and mass (GeV) copied from the input.
    """
    kept: dict[str, list] = {}
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for lo in range(0, len(dataset), SCORE_CHUNK_JETS):
            rows = np.arange(lo, min(len(dataset), lo + SCORE_CHUNK_JETS))
            for key, value in score_dataset(run, dataset, rows, batch_size).items():
                if key in ("rows", "logits"):
                    continue
                if key not in f:
                    f.create_dataset(key, shape=(0, *value.shape[1:]), maxshape=(None, *value.shape[1:]),
                                     dtype=value.dtype, chunks=True)
                f[key].resize(rows[-1] + 1, axis=0)
                f[key][lo:] = value
                if value.ndim == 1:
                    kept.setdefault(key, []).append(value)
        f["process"] = dataset.column("process").astype("S16")
        f["mass"] = dataset.column("mass").astype(np.float32)
        f.attrs.update(run_dir=str(run.run_dir), model=run.kind, classes=json.dumps(list(run.classes)),
                       inputs=json.dumps([str(p) for p in dataset.paths]),
                       provenance=json.dumps(provenance(), sort_keys=True))
    return {key: np.concatenate(parts) for key, parts in kept.items()}


def _fit_detector(model, prepared, config, rank: int, world: int) -> MahalanobisDetector:
    """Mahalanobis statistics of the training backgrounds; sums are all-reduced under DDP."""
    from nurdad.training import TRAIN, batches_for

    batches = batches_for(prepared, TRAIN, config, shuffle=False, rank=rank, world=world)
    scores = score_batches(model, None, "nurd", batches)
    labels = prepared.labels[scores["rows"]]
    detector = MahalanobisDetector()
    if world == 1:
        return detector.fit(scores["representation"], labels, class_names=prepared.classes)
    classes = np.arange(len(prepared.classes))
    shift = torch.from_numpy(scores["representation"].mean(axis=0)).double()
    torch.distributed.all_reduce(shift)
    shift = np.tile((shift / world).numpy(), (len(classes), 1))
    stats = GaussianStatistics.from_data(scores["representation"], labels, classes, shift=shift)
    flat = torch.from_numpy(stats.to_flat())
    torch.distributed.all_reduce(flat)
    return detector.fit_statistics(GaussianStatistics.from_flat(flat.numpy(), classes, shift),
                                   class_names=prepared.classes)


def _fresh_critic(model, prepared, config) -> dict:
    """Honest remaining dependence: a new critic on the frozen encoder, held-out background jets."""
    from nurdad.training import TRAIN, training_device

    rows = np.flatnonzero((prepared.split != TRAIN) & (prepared.labels >= 0))
    batches = JetBatches(prepared.dataset, rows, {}, 1024, shuffle=False,
                         in_memory_bytes=config.in_memory_gb * 2**30, device=training_device(config))
    scores = score_batches(model, None, "nurd", batches)
    r = scores["rows"]
    return fit_fresh_critic(
        torch.from_numpy(scores["representation"]), torch.from_numpy(prepared.labels[r]),
        torch.from_numpy(prepared.nuisance[r]), torch.from_numpy(prepared.weights[r]).float(),
        config.nurd.critic, n_classes=len(prepared.classes), max_epochs=config.fresh_critic_epochs,
        seed=config.seed,
    )


def finalize_run(config, prepared, objective, best, history, run_dir: Path, train_seconds: float,
                 rank: int, world: int) -> dict:
    """Restore the selected epoch, fit the detector, measure dependence; write model and summary."""
    model = _model_from_objective(objective)
    if best["state"] is not None:
        model.load_state_dict(best["state"]["encoder" if config.model == "nurd" else "autoencoder"])
    model.eval()
    summary = {
        "model": config.model, "best_epoch": best["epoch"] + 1, "epochs": config.epochs,
        "train_seconds": train_seconds, "parameters": count_parameters(model),
        "macs_per_jet": count_macs(model, (1, 1, *prepared.dataset.image_shape)),
        "final": history[-1] if history else {},
    }
    detector = None
    if config.model == "nurd":
        detector = _fit_detector(model, prepared, config, rank, world)
        summary["detector_parameters"] = int(detector.means_.size + detector.precision_cholesky_.size)
        if rank == 0:
            summary["fresh_critic"] = _fresh_critic(model, prepared, config)
    if rank == 0:
        save_torch({"state": model.state_dict(), "image_shape": list(prepared.dataset.image_shape)},
                   run_dir / "model.pt")
        if detector is not None:
            write_json(run_dir / "detector.json", detector.to_dict())
        write_json(run_dir / "summary.json", summary)
    return summary


def load_run(run_dir: str | Path) -> TrainedRun:
    """Load a finished run directory (config.json, model.pt, detector.json)."""
    from nurdad.models.autoencoder import ConvAutoencoder
    from nurdad.models.encoder import JetEncoder
    from nurdad.training import TrainConfig, read_run_config

    run_dir = Path(run_dir)
    for name in ("config.json", "model.pt"):
        if not (run_dir / name).exists():
            raise RunDirError(f"{run_dir}: no {name}; is this a finished nurdad run dir?")
    stored = read_run_config(run_dir)
    config = from_dict(TrainConfig, stored["train"], "train")
    saved = load_torch(run_dir / "model.pt", map_location="cpu")
    classes = tuple(stored["classes"])
    if config.model == "nurd":
        model = JetEncoder(dataclasses.replace(config.nurd.encoder, n_classes=len(classes)))
    else:
        model = ConvAutoencoder(config.baseline.autoencoder)
    model.load_state_dict(saved["state"])
    model.eval()
    detector = None
    if (run_dir / "detector.json").exists():
        detector = MahalanobisDetector.from_dict(read_json(run_dir / "detector.json"))
    return TrainedRun(run_dir, config, classes, model, detector, tuple(saved["image_shape"]),
                      stored["data"], stored["n_jets"])
