"""The NuRD training objective: w-weighted cross-entropy + lambda * dependence penalty.

Two estimates of the dependence I(r; z | y) that the penalty removes (`NurdConfig.dependence`):

- ``disco`` (default): the closed-form weighted distance correlation of `nurdad.nurd.disco`, exact on
  every batch and free of any adversarial game; per step it costs O(B^2 D), about the price of the
  classifier step. On real jets it is the estimate that removes the mass dependence of the
  Mahalanobis score (RESULTS.md); the critic game collapsed the classifier or left the score
  correlated.
- ``critic``: the NuRD density-ratio critic of `nurdad.nurd.critic`, trained on one of two schedules.

The critic schedules:

- ``fast`` (default): one persistent critic that takes `critic_steps` Adam steps on the current batch's
  detached representations before every encoder step, after a warm-up of `critic_warmup_steps` steps on
  the initial encoder. Cost per encoder step O(critic_steps * B): the epoch is O(n).
- ``reference``: as in the public NuRD code, after every encoder step the critic (re-initialized if
  `reference_reinit`) takes ``reference_frac * len(loader)`` steps over the whole training set with the
  current encoder frozen. Cost per encoder step O(n): the epoch is O(n^2). Kept for comparison.

lambda = 0 skips the critic entirely and is the plain multi-background classifier.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nurdad.distributed import rank_and_world
from nurdad.errors import ConfigError
from nurdad.models.encoder import EncoderConfig, JetEncoder
from nurdad.nurd.critic import Critic, CriticConfig, critic_loss, dependence_penalty
from nurdad.nurd.disco import disco_penalty

SCHEDULES = ("fast", "reference")
DEPENDENCE = ("critic", "disco")


@dataclass(frozen=True)
class NurdConfig:
    lambda_penalty: float = 1.0       # lambda: weight of the dependence penalty (0 = plain classifier)
    dependence: str = "disco"         # penalty: 'disco' (closed form, distance correlation) | 'critic'
    #                                   (NuRD density-ratio critic trained on the `schedule` below)
    schedule: str = "fast"            # critic schedule ('critic' only): 'fast' | 'reference'
    critic_steps: int = 5             # fast: critic steps per encoder step (on the current batch)
    critic_lr: float = 1e-3           # Adam learning rate of the critic
    critic_warmup_steps: int = 50     # fast: critic steps on the initial encoder before training
    reference_frac: float = 2.0       # reference: critic steps = frac * batches per epoch, per encoder step
    reference_reinit: bool = True     # reference: re-initialize the critic before every encoder step
    encoder: EncoderConfig = EncoderConfig()
    critic: CriticConfig = CriticConfig()

    def __post_init__(self):
        if not (self.lambda_penalty >= 0 and math.isfinite(self.lambda_penalty)):
            raise ConfigError(
                f"nurd.lambda_penalty: expected a finite value >= 0, got {self.lambda_penalty}"
            )
        if self.dependence not in DEPENDENCE:
            raise ConfigError(f"nurd.dependence: expected one of {DEPENDENCE}, got {self.dependence!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"nurd.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("critic_steps", "critic_warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"nurd.{name}: expected >= 0, got {getattr(self, name)}")
        if not self.critic_lr > 0 or not self.reference_frac > 0:
            raise ConfigError("nurd.critic_lr and nurd.reference_frac: expected > 0")


def _weight_per_rank(w: Tensor) -> Tensor:
    """The global batch's total weight / number of ranks, so that DDP's gradient average over ranks of
    sum_local(w * loss) / this equals one process's weighted mean over the whole global batch."""
    total = w.sum().detach()
    world = rank_and_world()[1]
    if world > 1:
        total = total.clone()
        torch.distributed.all_reduce(total)
        total /= world
    return total


def _allreduce_grads(module: nn.Module) -> None:
    """Average gradients over ranks (the critic is not DDP-wrapped: it runs two forwards per step)."""
    world = rank_and_world()[1]
    if world > 1:
        for p in module.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world


class NurdObjective:
    """Holds the encoder, the critic and their optimizers; `train_step` does one encoder update."""

    def __init__(self, config: NurdConfig, n_classes: int, n_nuisance: int, lr: float, seed: int,
                 device: torch.device | str = "cpu", wrap=lambda m: m):
        self.config = config
        torch.manual_seed(seed)
        self.encoder = JetEncoder(_with_classes(config.encoder, n_classes)).to(device)
        self.critic = Critic(config.encoder.representation_dim, n_classes, n_nuisance,
                             config.critic).to(device)
        self.model = wrap(self.encoder)  # DDP-wrapped under torch.distributed
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.generator = torch.Generator().manual_seed(seed + 1)  # nuisance permutations
        self.uses_critic = config.lambda_penalty > 0 and config.dependence == "critic"
        self.uses_disco = config.lambda_penalty > 0 and config.dependence == "disco"

    # -- state for checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "encoder": self.encoder.state_dict(), "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator.set_state(state["generator"])

    def model_state(self) -> dict:
        """What selection keeps and scoring needs."""
        return {"encoder": self.encoder.state_dict(), "critic": self.critic.state_dict()}

    # -- training ----------------------------------------------------------------------------------
    def _critic_step(self, r: Tensor, y: Tensor, z: Tensor, w: Tensor) -> float:
        loss = critic_loss(self.critic, r.detach(), y, z, w, generator=self.generator)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _allreduce_grads(self.critic)
        self.critic_optimizer.step()
        return loss.item()

    def begin(self, batches) -> None:
        """Warm the persistent critic up on the initial encoder (fast schedule)."""
        if not self.uses_critic or self.config.schedule != "fast":
            return
        steps = 0
        while steps < self.config.critic_warmup_steps:
            for batch in batches.epoch(1_000_000 + steps):  # an order unused by training
                with torch.no_grad():
                    _, r = self.model(batch["images"])
                self._critic_step(r, batch["labels"], batch["nuisance"], batch["weights"])
                steps += 1
                if steps >= self.config.critic_warmup_steps:
                    return

    def _reference_critic_update(self, batches) -> None:
        if self.config.reference_reinit:
            self.critic.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.config.critic_lr)
        total = max(1, int(self.config.reference_frac * len(batches)))
        steps = 0
        while steps < total:
            for batch in batches.epoch(int(torch.randint(2**31 - 1, (1,), generator=self.generator))):
                with torch.no_grad():
                    _, r = self.model(batch["images"])
                self._critic_step(r, batch["labels"], batch["nuisance"], batch["weights"])
                steps += 1
                if steps >= total:
                    break

    def train_step(self, batch: dict[str, Tensor], batches) -> dict[str, float]:
        """One encoder update on `batch`; `batches` (the training loader) serves the reference schedule."""
        y, z, w = batch["labels"], batch["nuisance"], batch["weights"]
        logits, r = self.model(batch["images"])  # (B, K), (B, D)
        ce = (w * F.cross_entropy(logits, y, reduction="none")).sum() / _weight_per_rank(w)
        info = torch.zeros(())
        if self.uses_critic:
            if self.config.schedule == "fast":
                for _ in range(self.config.critic_steps):
                    self._critic_step(r, y, z, w)
            info = dependence_penalty(self.critic, r, y, z, w, generator=self.generator)
        elif self.uses_disco:
            info = self._disco(r, y, z, w)
        loss = ce + self.config.lambda_penalty * info
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.uses_critic and self.config.schedule == "reference":
            self._reference_critic_update(batches)
        return {"loss": loss.item(), "ce": ce.item(), "info": info.item()}

    @torch.no_grad()
    def validation_sums(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """Weighted sums over one validation batch: CE, penalty, correct labels, total weight."""
        y, z, w = batch["labels"], batch["nuisance"], batch["weights"]
        logits, r = self.encoder(batch["images"])
        sums = {
            "ce": float((w * F.cross_entropy(logits, y, reduction="none")).sum()),
            "accuracy": float((w * (logits.argmax(1) == y)).sum()),
            "weight": float(w.sum()),
        }
        info = torch.zeros(())
        if self.uses_critic:
            fixed = torch.Generator().manual_seed(int(batch["rows"][0]))  # same permutation every epoch
            info = dependence_penalty(self.critic, r, y, z, w, generator=fixed)
        elif self.uses_disco:
            info = self._disco(r, y, z, w)
        sums["info"] = float(info * w.sum())
        return sums

    def _disco(self, r: Tensor, y: Tensor, z: Tensor, w: Tensor) -> Tensor:
        return disco_penalty(r, y, z, w, self.critic.n_classes, self.config.critic.shrinkage)

    def selection(self, means: dict[str, float]) -> float:
        """Model selection criterion (lower is better): weighted CE + lambda * info."""
        return means["ce"] + self.config.lambda_penalty * means["info"]


def _with_classes(config: EncoderConfig, n_classes: int) -> EncoderConfig:
    return dataclasses.replace(config, n_classes=n_classes)
