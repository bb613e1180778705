"""Generate a jet dataset: Pythia8 + FastJet jets -> images -> sharded HDF5 -> one merged file.

The work is cut into shards of `jets_per_shard` jets per process, each with its own seed derived from
the base seed, so that any subset of shards can run anywhere (``--workers`` processes here, or
``--shard i/N`` on a batch farm) and the union is the same dataset. A shard is written to a temporary
name and renamed when complete; rerunning the same command skips finished shards (resume).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shutil
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from nurdad.config import to_dict
from nurdad.data import merge_files, write_jets
from nurdad.errors import ConfigError, NurdadError
from nurdad.images import ImageConfig, jet_images
from nurdad.simulation import SimulationConfig, get_process, simulate_jets

log = logging.getLogger(__name__)

_MAX_SEED = 900_000_000  # Pythia's Random:seed accepts 1 .. 900 000 000


@dataclass(frozen=True)
class GenerateConfig:
    jets: dict[str, int] = field(default_factory=lambda: {"qcd": 2000, "wz": 2000, "top": 500})
    seed: int = 1                 # base seed; shard seeds derive from it
    jets_per_shard: int = 500     # unit of work, of resume and of batch-farm splitting
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    images: ImageConfig = field(default_factory=ImageConfig)

    def __post_init__(self):
        if not self.jets:
            raise ConfigError("generate.jets: expected at least one process = number of jets")
        for name, n in self.jets.items():
            get_process(name)
            if n < 1:
                raise ConfigError(f"generate.jets.{name}: expected a positive number of jets, got {n}")
        if not 1 <= self.seed < _MAX_SEED:
            raise ConfigError(f"generate.seed: expected 1 <= seed < {_MAX_SEED}, got {self.seed}")
        if self.jets_per_shard < 1:
            raise ConfigError(f"generate.jets_per_shard: expected >= 1, got {self.jets_per_shard}")


@dataclass(frozen=True)
class ShardTask:
    process: str
    index: int
    n_jets: int
    seed: int
    path: Path


def shard_seed(base_seed: int, process: str, index: int) -> int:
    """A stable seed in [1, 9e8) per (base seed, process, shard index)."""
    return 1 + zlib.crc32(f"{base_seed}:{process}:{index}".encode()) % (_MAX_SEED - 1)


def shard_dir(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def plan_shards(config: GenerateConfig, output: Path) -> list[ShardTask]:
    """All shards of the dataset, in a fixed order (process order of the config, then index)."""
    tasks = []
    for process, n_total in config.jets.items():
        for index in range(math.ceil(n_total / config.jets_per_shard)):
            n = min(config.jets_per_shard, n_total - index * config.jets_per_shard)
            tasks.append(ShardTask(
                process, index, n, shard_seed(config.seed, process, index),
                shard_dir(output) / f"{process}-{index:05d}.h5",
            ))
    return tasks


def interleaved(tasks: list[ShardTask]) -> list[ShardTask]:
    """Shards in round-robin order over processes, so a partial run (or one batch node) holds a
    balanced mix of processes rather than all of the first one."""
    order = {name: k for k, name in enumerate(dict.fromkeys(t.process for t in tasks))}
    return sorted(tasks, key=lambda t: (t.index, order[t.process]))


def parse_shard_selector(selector: str | None) -> tuple[int, int]:
    """'i/N' -> (i, N); None -> (0, 1)."""
    if selector is None:
        return 0, 1
    try:
        i, n = (int(x) for x in selector.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected i/N with integers, e.g. 0/4, got {selector!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard: expected 0 <= i < N, got {selector!r}")
    return i, n


def _shard_config(config: GenerateConfig, task: ShardTask) -> dict:
    return {
        "process": task.process, "shard_index": task.index, "n_jets": task.n_jets, "seed": task.seed,
        "simulation": to_dict(config.simulation), "images": to_dict(config.images),
    }


def _existing_shard_matches(task: ShardTask, expected: dict) -> bool:
    if not task.path.exists():
        return False
    try:
        with h5py.File(task.path, "r") as f:
            stored = json.loads(f.attrs["config"])
    except (OSError, KeyError, ValueError):
        log.warning("%s: unreadable shard, regenerating it", task.path)
        return False
    if stored != expected:
        raise NurdadError(
            f"{task.path}: shard made with different settings; delete {task.path.parent} "
            "or choose another output"
        )
    return True


def make_shard(task: ShardTask, config: GenerateConfig, progress=None) -> dict[str, float]:
    """Simulate, image and write one shard; returns the time split (seconds)."""
    batch = simulate_jets(task.process, task.n_jets, task.seed, config.simulation, progress=progress)
    images = jet_images(batch.constituents, batch.eta, batch.phi, config.images)
    columns = {
        "process": np.full(len(batch), task.process, dtype="S16"),
        "mass": batch.mass, "pt": batch.pt, "eta": batch.eta, "phi": batch.phi,
        "n_constituents": batch.n_constituents, "tau21": batch.tau21, "tau32": batch.tau32,
        "truth_matched": batch.truth_matched,
        "seed": np.full(len(batch), task.seed, dtype=np.int64), "event_index": batch.event_index,
    }
    write_jets(task.path, images, columns, config=_shard_config(config, task))
    return dict(batch.timing)


def _make_shard_in_worker(task, config, queue):
    return make_shard(task, config, progress=queue.put)


def generate(
    config: GenerateConfig,
    output: str | Path,
    workers: int = 1,
    shard: str | None = None,
    keep_shards: bool = False,
    show_progress: bool = True,
) -> Path | None:
    """Generate the dataset into `output` (resuming finished shards).

    With ``shard='i/N'`` only every N-th shard (offset i) is made and nothing is merged: merge the shard
    directory afterwards with ``nurdad data merge``. Returns the merged file, or None in shard mode.
    """
    output = Path(output)
    if workers < 1:
        raise ConfigError(f"--workers: expected a positive number of processes, got {workers}")
    part, n_parts = parse_shard_selector(shard)
    dataset_config = {"generate": to_dict(config)}
    if output.exists():
        try:
            with h5py.File(output, "r") as f:
                complete = json.loads(f.attrs.get("config", "{}")) == dataset_config
        except (OSError, ValueError):
            raise NurdadError(
                f"{output}: exists and is not a readable nurdad jet file; delete it or choose another --out"
            ) from None
        if complete:
            log.info("%s is complete; nothing to do", output)
            return output
        raise NurdadError(f"{output}: exists with other settings; delete it or choose another --out")
    try:
        shard_dir(output).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NurdadError(f"{output}: cannot write here ({exc.strerror})") from None
    tasks = plan_shards(config, output)
    mine = [t for k, t in enumerate(interleaved(tasks)) if k % n_parts == part]
    todo = [t for t in mine if not _existing_shard_matches(t, _shard_config(config, t))]
    log.info("%d shards planned, %d done, %d to generate", len(mine), len(mine) - len(todo), len(todo))
    _run_tasks(todo, config, workers, show_progress)
    if n_parts > 1:
        log.info("shards %d/%d done in %s; merge with: nurdad data merge %s -o %s",
                 part, n_parts, shard_dir(output), shard_dir(output), output)
        return None
    merge_files([t.path for t in tasks], output, config=dataset_config)
    if not keep_shards:
        shutil.rmtree(shard_dir(output), ignore_errors=True)
    return output


def _run_tasks(todo: list[ShardTask], config: GenerateConfig, workers: int, show_progress: bool) -> None:
    if not todo:
        return
    bar = tqdm(total=sum(t.n_jets for t in todo), unit="jet", desc="generate", disable=not show_progress,
               smoothing=0.05)
    with bar:
        if workers == 1:
            for task in todo:
                make_shard(task, config, progress=bar.update)
            return
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
            queue = manager.Queue()
            pending = {pool.submit(_make_shard_in_worker, t, config, queue) for t in todo}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    bar.update(queue.get())
                for future in done:
                    future.result()  # re-raise a worker's error here

