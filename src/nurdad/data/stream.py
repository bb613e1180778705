"""Mini-batches over selected rows of a jet dataset, in memory when they fit, streamed otherwise.

The batch order is a pure function of (seed, epoch), so an interrupted run resumes with the same
batches. Under torch.distributed every rank walks the same global batches and keeps the slice
``[rank::world_size]``, so N ranks with global batch B see exactly what one process sees with B.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch

from nurdad.data.schema import JetDataset

log = logging.getLogger(__name__)


class JetBatches:
    """Batches of ``{'images': (B, 1, H, W), <name>: (B,...) for each per-row array, 'rows': (B,)}``.

    Parameters
    ----------
    dataset : the jet files.
    rows : (n,) global row indices to iterate over.
    arrays : per-row values aligned with `rows` (labels, nuisance, weights, ...), numpy.
    batch_size : global batch size (summed over ranks).
    shuffle : reshuffle every epoch (training) or keep file order (evaluation).
    in_memory_bytes : preload the images when they take less than this; else stream blocks from HDF5.
    block_rows : rows per streamed read; a shuffle buffer holds `buffer_blocks` blocks.
    """

    def __init__(
        self,
        dataset: JetDataset,
        rows: np.ndarray,
        arrays: dict[str, np.ndarray],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        in_memory_bytes: float = 4 * 2**30,
        block_rows: int = 4096,
        buffer_blocks: int = 8,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ):
        self.dataset = dataset
        order = np.argsort(rows, kind="stable")
        self.rows = np.asarray(rows, dtype=np.int64)[order]
        self.arrays = {name: np.asarray(values)[order] for name, values in arrays.items()}
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.block_rows = block_rows
        self.buffer_blocks = buffer_blocks
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        pixels = int(np.prod(dataset.image_shape))
        self.in_memory = len(self.rows) * pixels * 4 <= in_memory_bytes
        self._images = None
        if self.in_memory:
            self._images = self._read(np.arange(len(self.rows)))
        else:
            log.info("streaming %d jets from HDF5 in blocks of %d", len(self.rows), block_rows)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def _read(self, positions: np.ndarray) -> np.ndarray:
        if self._images is not None:
            return self._images[positions]
        out = np.empty((len(positions), *self.dataset.image_shape), dtype=np.float32)
        for start in range(0, len(positions), self.block_rows):
            chunk = positions[start : start + self.block_rows]
            out[start : start + len(chunk)] = self.dataset.read_images(self.rows[chunk])
        return out

    def _positions(self, epoch: int) -> Iterator[np.ndarray]:
        """Blocks of positions (into self.rows) in this epoch's order."""
        n = len(self.rows)
        if not self.shuffle:
            step = n if self.in_memory else self.block_rows * self.buffer_blocks
            for start in range(0, n, step):
                yield np.arange(start, min(n, start + step))
            return
        rng = np.random.default_rng([self.seed, epoch])
        if self.in_memory:
            yield rng.permutation(n)
            return
        starts = rng.permutation(np.arange(0, n, self.block_rows))
        for k in range(0, len(starts), self.buffer_blocks):
            buffer = [np.arange(s, min(n, s + self.block_rows)) for s in starts[k : k + self.buffer_blocks]]
            yield rng.permutation(np.concatenate(buffer))

    def epoch(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Iterate once over all rows; the last batch may be smaller."""
        carry = np.empty(0, dtype=np.int64)
        for block in self._positions(epoch):
            block = np.concatenate([carry, block])
            buffer = None if self.in_memory else self._load_buffer(block)
            n_full = len(block) // self.batch_size * self.batch_size
            for start in range(0, n_full, self.batch_size):
                yield self._batch(block[start : start + self.batch_size], buffer)
            carry = block[n_full:]
        if len(carry):
            yield self._batch(carry, None if self.in_memory else self._load_buffer(carry))

    def _load_buffer(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images of a whole shuffle buffer, read in sorted order: one near-contiguous pass over the
        HDF5 chunks instead of scattered per-batch reads (measured 430 -> 20 ms per batch of 256)."""
        ordered = np.sort(positions)
        return ordered, self._read(ordered)

    def _batch(self, positions: np.ndarray, buffer=None) -> dict[str, torch.Tensor]:
        mine = positions[self.rank :: self.world_size]
        if buffer is None:
            images = self._read(mine)
        else:
            ordered, buffered_images = buffer
            images = buffered_images[np.searchsorted(ordered, mine)]
        images = torch.from_numpy(images).unsqueeze(1)  # (B, 1, H, W)
        batch = {name: torch.from_numpy(values[mine]) for name, values in self.arrays.items()}
        batch["images"] = images
        batch["rows"] = torch.from_numpy(self.rows[mine])
        if self.device.type != "cpu":
            batch = {name: t.to(self.device, non_blocking=True) for name, t in batch.items()}
        return batch
