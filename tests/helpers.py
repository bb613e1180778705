"""Toy jets for unit tests: hand-made images and masses, NOT physics (named toy_*)."""

from __future__ import annotations

import numpy as np

from nurdad.data import write_jets


def toy_images(n: int, kind: str, rng: np.random.Generator, size: int = 50) -> np.ndarray:
    """Unit-sum toy images: 'one' blob (qcd-like), 'two' blobs (wz-like), 'three' blobs (top-like)."""
    blobs = {"one": 1, "two": 2, "three": 3}[kind]
    images = np.zeros((n, size, size), dtype=np.float32)
    centre = size // 2
    for i in range(n):
        for b in range(blobs):
            r, c = centre + rng.integers(-3, 4) + 6 * b, centre + rng.integers(-3, 4) - 4 * b
            images[i, r % size, c % size] += rng.uniform(0.5, 1.0)
        images[i] += rng.exponential(0.002, (size, size)) * (rng.random((size, size)) < 0.05)
        images[i] /= images[i].sum()
    return images


def toy_jet_file(path, counts: dict[str, int] | None = None, seed: int = 0, size: int = 50):
    """Write a toy jet file with processes qcd / wz / top; masses depend on the process."""
    counts = counts or {"qcd": 300, "wz": 300, "top": 100}
    kinds = {"qcd": "one", "wz": "two", "top": "three"}
    mass_mean = {"qcd": 70.0, "wz": 90.0, "top": 170.0}
    rng = np.random.default_rng(seed)
    images, process, mass = [], [], []
    for name, n in counts.items():
        images.append(toy_images(n, kinds[name], rng, size))
        process += [name] * n
        mass.append(rng.normal(mass_mean[name], 15.0, n).clip(5))
    columns = {"process": np.array(process, dtype="S16"), "mass": np.concatenate(mass),
               "pt": rng.uniform(550, 650, sum(counts.values()))}
    return write_jets(path, np.concatenate(images), columns, config={"toy": True, "seed": seed})
