"""The autoencoder baseline objective: a ConvAutoencoder trained on QCD jets only, score = MSE.

It shares the trainer, the data splits and the checkpointing with NuRD, so that the two are compared
on the same jets with the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nurdad.models.autoencoder import AutoencoderConfig, ConvAutoencoder


@dataclass(frozen=True)
class BaselineConfig:
    train_on: tuple[str, ...] = ("qcd",)   # processes the autoencoder learns ("QCD or What?": QCD only)
    autoencoder: AutoencoderConfig = AutoencoderConfig()


class AutoencoderObjective:
    """Mean reconstruction error of the autoencoder; the same interface as `NurdObjective`."""

    uses_critic = False

    def __init__(self, config: BaselineConfig, lr: float, seed: int, device: torch.device | str = "cpu",
                 wrap=lambda m: m):
        torch.manual_seed(seed)
        self.config = config
        self.autoencoder = ConvAutoencoder(config.autoencoder).to(device)
        self.model = wrap(self.autoencoder)
        self.optimizer = torch.optim.Adam(self.autoencoder.parameters(), lr=lr)

    def state_dict(self) -> dict:
        return {"autoencoder": self.autoencoder.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.optimizer.load_state_dict(state["optimizer"])

    def model_state(self) -> dict:
        return {"autoencoder": self.autoencoder.state_dict()}

    def begin(self, batches) -> None:
        """Nothing to warm up."""

    def train_step(self, batch: dict[str, Tensor], batches) -> dict[str, float]:
        images = batch["images"]
        reconstruction = self.model(images)
        loss = torch.mean((reconstruction - self.autoencoder.target(images)) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_sums(self, batch: dict[str, Tensor]) -> dict[str, float]:
        errors = self.autoencoder.reconstruction_error(batch["images"])
        return {"mse": float(errors.sum()), "weight": float(len(errors))}

    def selection(self, means: dict[str, float]) -> float:
        return means["mse"]
