"""NuRD step II penalty: a critic that estimates how much the representation still knows about z.

The critic p_phi classifies "joint" samples (r(x), y, z) against "randomized" samples
(r(x), y, z') with z' taken from another jet of the same class by a permutation, i.e. samples of
p(r, y) p(z | y). At its optimum its logit T is the log density ratio
log p(r, z | y) / (p(r | y) p(z | y)), whose mean over joint samples is I(r; z | y): the dependence
NuRD removes. (The reference code permutes across the batch and relies on the weights to make
y independent of z; clipped weights leave I(y; z) > 0, which that estimate counts but no encoder can
remove, see `randomized_nuisance`.) The encoder minimizes

    L = mean_w(CE(logits, y)) + lambda * dependence_penalty,  lambda >= 0,

while the critic is trained on detached r with `critic_loss`. Everything here is a pure function of
tensors, so a DDP loop can call it per rank. Randomized samples reuse the weight of the jet whose
(r, y) they carry: with w = p(y) / p(y | z) the weighted z-marginal equals the unweighted one.

Two penalties (`CriticConfig.penalty`):
- 'joint' (reference code): mean_w T(r, y, z). Its value estimates the MI, but its gradient also
  rewards moving r to where the critic is low for every z, which removes no dependence.
- 'contrast' (default): mean_w T(r, y, z) - mean_w T(r, y, z_perm). A shift of T that ignores z
  cancels, so only z-dependence is penalized; at the optimal critic it equals
  KL(p || p_r p_z) + KL(p_r p_z || p) >= I, zero exactly at independence.
On the planted-nuisance toy of tests/test_critic.py (lambda = 3, 4 seeds; fresh-critic estimate
0.24-1.0 nats at lambda = 0): with the critic taking 5 steps over the whole training set per
encoder step, 'joint' left 0.84 nats in one seed and collapsed the accuracy to 0.5 in another,
'contrast' reached <= 0.003 nats at accuracy ~0.9 in all; with 5 critic steps on the current
batch both worked (max 0.19 nats 'joint', 0.10 'contrast').
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nurdad.errors import ConfigError, NurdadError
from nurdad.models.encoder import mlp

log = logging.getLogger(__name__)

CRITIC_MODES = ("joint", "marginal")
PENALTIES = ("contrast", "joint")
INPUTS = ("whitened", "standardized")
EMBEDDING_HIDDEN = 16  # hidden width of the nuisance embedding MLP s(z)


@dataclass(frozen=True)
class CriticConfig:
    hidden: tuple[int, ...] = (256, 128, 64)  # ReLU MLP widths (the talk's 256, 128, 64)
    nuisance_embedding: int = 8  # width of the learned embedding s(z): Z -> 16 -> this (ReLU)
    mode: str = "joint"  # 'joint': critic sees (r, onehot y, s(z)) -> I((r, y); z);
    #                      'marginal': (r, s(z)) -> I(r; z)
    penalty: str = "contrast"  # 'contrast': mean joint T - mean randomized T; 'joint': mean joint T
    input: str = "whitened"  # how r enters: 'whitened' (class-centred, pooled covariance) | 'standardized'
    shrinkage: float = 1e-3  # 'whitened': covariance (1 - s) * C + s * mean variance * I; small, like the
    #                          detector's Ledoit-Wolf value, or r hides dependence below it

    def __post_init__(self):
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(
                f"critic.hidden: expected a non-empty list of positive integers, got {self.hidden!r}"
            )
        if not isinstance(self.nuisance_embedding, int) or self.nuisance_embedding < 1:
            raise ConfigError(
                f"critic.nuisance_embedding: expected a positive integer, "
                f"got {self.nuisance_embedding!r}"
            )
        if self.mode not in CRITIC_MODES:
            raise ConfigError(f"critic.mode: expected one of {CRITIC_MODES}, got {self.mode!r}")
        if self.penalty not in PENALTIES:
            raise ConfigError(
                f"critic.penalty: expected one of {PENALTIES}, got {self.penalty!r}"
            )
        if self.input not in INPUTS:
            raise ConfigError(f"critic.input: expected one of {INPUTS}, got {self.input!r}")
        if not 0 < self.shrinkage <= 1:
            raise ConfigError(f"critic.shrinkage: expected a value in (0, 1], got {self.shrinkage!r}")


class Critic(nn.Module):
    """MLP critic: (r (B, D), y (B,) int, z (B,) or (B, Z) standardized) -> logits (B,).

    A logit > 0 says "this z belongs with this (r, y)" (joint sample), < 0 "z was randomized".
    """

    def __init__(self, representation_dim: int, n_classes: int, n_nuisance: int,
                 config: CriticConfig):
        super().__init__()
        self.config = config
        self.n_classes = n_classes
        self.n_nuisance = n_nuisance
        self.embed = mlp((n_nuisance, EMBEDDING_HIDDEN, config.nuisance_embedding),
                         final_activation=True)
        n_in = representation_dim + config.nuisance_embedding
        n_in += n_classes if config.mode == "joint" else 0
        self.net = mlp((n_in, *config.hidden, 1))

    def forward(self, r: Tensor, y: Tensor, z: Tensor) -> Tensor:
        parts = [self.scaled(r, y), self.embed(_as_columns(z, self.n_nuisance).to(r.dtype))]  # (B, D), (B, E)
        if self.config.mode == "joint":
            parts.append(F.one_hot(y.long(), self.n_classes).to(r.dtype))  # (B, K)
        return self.net(torch.cat(parts, dim=1)).squeeze(1)  # (B,)

    def scaled(self, r: Tensor, y: Tensor) -> Tensor:
        """r as the critic sees it (`CriticConfig.input`)."""
        if self.config.input == "whitened":
            return whitened(r, y, self.n_classes, self.config.shrinkage)
        return _standardized(r)


def _standardized(r: Tensor) -> Tensor:
    """r scaled per feature with the batch's (detached) mean and spread.

    The encoder's representation drifts in scale during training (|r| ~ 40 on real jets); an MLP
    critic fed raw r then learns too slowly to see the dependence (measured: R^2 0.93 of mass from r
    went undetected). Standardizing makes the critic blind to scale and offset, which carry no
    information about the dependence between r and z.
    """
    if r.shape[0] < 2:
        return r
    mean = r.detach().mean(dim=0, keepdim=True)
    spread = r.detach().std(dim=0, keepdim=True) + 1e-6
    return (r - mean) / spread


def batch_whitening(r: Tensor, y: Tensor, n_classes: int, shrinkage: float) -> tuple[Tensor, Tensor]:
    """Detached class means (K, D) and inverse Cholesky factor L^-1 (D, D) of the batch's pooled
    within-class covariance, shrunk towards the mean variance: (1 - s) C + s * mean(diag C) * I."""
    rd = r.detach().double()
    y = y.long()
    counts = torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(rd)
    means = torch.zeros(n_classes, r.shape[1], dtype=rd.dtype, device=r.device).index_add_(0, y, rd) / counts
    centred = rd - means[y]
    cov = centred.T @ centred / max(r.shape[0] - n_classes, 1)
    scale = cov.diagonal().mean().clamp_min(1e-12)
    cov = (1 - shrinkage) * cov + shrinkage * scale * torch.eye(r.shape[1], dtype=rd.dtype, device=r.device)
    return means.to(r.dtype), torch.linalg.inv(torch.linalg.cholesky(cov)).to(r.dtype)


def whitened(r: Tensor, y: Tensor, n_classes: int, shrinkage: float) -> Tensor:
    """r centred on its class mean and whitened with the pooled within-class covariance (both from
    the batch, detached, shrunk towards the mean variance).

    This is the geometry of the Mahalanobis detector: a direction of r with a tiny within-class
    spread is amplified by Sigma^-1 in the score, so the critic must see it at unit scale too.
    Per-feature standardization hides it: measured on real jets, the reference schedule reached a
    fresh-critic estimate of 0.10 nats with standardized inputs while |corr(score, mass)| on QCD
    stayed 0.77. Class centring loses nothing, since the critic also sees y.
    """
    if r.shape[0] <= n_classes + 1:
        return r
    means, inverse_cholesky = batch_whitening(r, y, n_classes, shrinkage)
    return (r - means[y.long()]) @ inverse_cholesky.T


def randomized_nuisance(critic: Critic, z: Tensor, y: Tensor,
                        generator: torch.Generator | None = None) -> Tensor:
    """The critic's "randomized" z: permuted within each class in 'joint' mode, across the batch in
    'marginal' mode.

    Within-class permutation gives samples of p(r, y) p(z | y), so the critic estimates I(r; z | y):
    what the representation knows about z beyond the label. Permuting across the batch would also
    count I(y; z), which the clipped importance weights leave non-zero (no W/Z jets exist in the QCD
    mass tails) and which no encoder can remove: measured on real jets, it kept the penalty at
    ~1.4 nats and destroyed the classifier (validation accuracy 0.5 at lambda = 3).
    """
    return permute_nuisance(z, y if critic.config.mode == "joint" else None, generator=generator)


def _as_columns(z: Tensor, n_nuisance: int) -> Tensor:
    z = z.unsqueeze(1) if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != n_nuisance:
        raise NurdadError(f"nuisance: expected shape (B,) or (B, {n_nuisance}), got {tuple(z.shape)}")
    return z


def permute_nuisance(z: Tensor, y: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """z permuted across the batch (rows for (B, Z)): with (r, y) kept, samples of p(r, y) p(z).

    With `y` given, z is permuted within each class instead: samples of p(r, y) p(z | y), for
    estimating I(r; z | y) directly on unweighted data. `generator` lives on the CPU.
    """
    n = z.shape[0]
    if y is None:
        perm = torch.randperm(n, generator=generator)
    else:
        y_cpu = y.detach().cpu()
        perm = torch.empty(n, dtype=torch.long)
        for k in torch.unique(y_cpu):
            idx = torch.nonzero(y_cpu == k).squeeze(1)
            perm[idx] = idx[torch.randperm(len(idx), generator=generator)]
    return z[perm.to(z.device)]


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    return (values * weights).sum() / weights.sum()


def critic_loss(critic: Critic, r: Tensor, y: Tensor, z: Tensor, weights: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
    """Weighted BCE of joint (r, y, z) -> 1 against randomized (r, y, z_perm) -> 0, a scalar.

    The two halves are averaged with equal total weight (balanced classes, so the optimal logit is
    the log density ratio). Pass r detached when this step should train only the critic.
    """
    joint = critic(r, y, z)
    randomized = critic(r, y, randomized_nuisance(critic, z, y, generator))
    bce_joint = F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint), reduction="none")
    bce_rand = F.binary_cross_entropy_with_logits(
        randomized, torch.zeros_like(randomized), reduction="none"
    )
    return 0.5 * (_weighted_mean(bce_joint, weights) + _weighted_mean(bce_rand, weights))


def dependence_penalty(critic: Critic, r: Tensor, y: Tensor, z: Tensor, weights: Tensor,
                       generator: torch.Generator | None = None) -> Tensor:
    """The encoder's dependence penalty, a scalar; see the module notes for the two kinds.

    'joint': weighted mean over joint samples of the critic logit T = log p_phi / (1 - p_phi),
    the density-ratio estimate of I((r, y); z). 'contrast': the same minus the weighted mean logit
    on randomized samples (z permuted with `generator`). The critic is evaluated with detached
    parameters, so the gradient flows only into r (the encoder) and the critic's .grad stays
    untouched. Pass the bare critic module (`ddp_critic.module` under DDP).
    """
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    penalty = _weighted_mean(torch.func.functional_call(critic, frozen, (r, y, z)), weights)
    if critic.config.penalty == "contrast":
        z_rand = randomized_nuisance(critic, z, y, generator)
        randomized = torch.func.functional_call(critic, frozen, (r, y, z_rand))
        penalty = penalty - _weighted_mean(randomized, weights)
    return penalty


def train_critic_steps(critic: Critic, optimizer: torch.optim.Optimizer, r: Tensor, y: Tensor,
                       z: Tensor, weights: Tensor, n_steps: int, batch_size: int,
                       generator: torch.Generator | None = None) -> float:
    """`n_steps` Adam-style steps of `critic_loss` on minibatches of frozen (r, y, z, w) tensors.

    Minibatches walk through a fresh random order of the N samples (several passes if
    n_steps * batch_size > N). Returns the mean loss of the steps.
    """
    r = r.detach()
    n = r.shape[0]
    order = torch.randperm(n, generator=generator).to(r.device)
    start, total = 0, 0.0
    for _ in range(n_steps):
        if start >= n:
            order = torch.randperm(n, generator=generator).to(r.device)
            start = 0
        idx = order[start:start + batch_size]
        start += batch_size
        loss = critic_loss(critic, r[idx], y[idx], z[idx], weights[idx], generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / max(n_steps, 1)


@torch.no_grad()
def critic_metrics(critic: Critic, r: Tensor, y: Tensor, z: Tensor, weights: Tensor,
                   generator: torch.Generator | None = None) -> dict[str, float]:
    """Held-out diagnostics of a trained critic.

    info_estimate: weighted mean joint logit (nats; the MI estimate of the reference code);
    contrast_estimate: that minus the weighted mean randomized logit (insensitive to a constant
    offset of a miscalibrated critic); critic_auc: weighted AUROC of joint vs randomized
    (0.5 = no detectable dependence); critic_bce: the weighted BCE (log 2 = 0.693 when blind).
    """
    from sklearn.metrics import roc_auc_score

    z_rand = randomized_nuisance(critic, z, y, generator)
    joint, randomized = critic(r, y, z), critic(r, y, z_rand)
    scores = torch.cat([joint, randomized]).cpu().numpy()
    truth = np.r_[np.ones(len(joint)), np.zeros(len(randomized))]
    w = weights.detach().cpu().numpy()
    bce = 0.5 * (
        _weighted_mean(F.softplus(-joint), weights) + _weighted_mean(F.softplus(randomized), weights)
    )
    return {
        "info_estimate": float(_weighted_mean(joint, weights)),
        "contrast_estimate": float(_weighted_mean(joint - randomized, weights)),
        "critic_auc": float(roc_auc_score(truth, scores, sample_weight=np.r_[w, w])),
        "critic_bce": float(bce),
    }


def fit_fresh_critic(r: Tensor, y: Tensor, z: Tensor, weights: Tensor, config: CriticConfig,
                     n_classes: int | None = None, max_epochs: int = 30, patience: int = 4,
                     batch_size: int = 1024, lr: float = 1e-3, seed: int = 0,
                     val_fraction: float = 0.3, min_delta: float = 1e-4) -> dict[str, float]:
    """Train a new critic on frozen representations; the honest end-of-training dependence check.

    The samples are split (seeded) into train and held-out parts; the critic trains with Adam on
    the train part; the metrics of the epoch with the lowest held-out weighted BCE are returned
    (early stopping after `patience` epochs without an improvement > `min_delta`). Deterministic
    for a fixed seed on one device.

    Parameters
    ----------
    r : (N, D) float tensor of representations; y : (N,) int labels; z : (N,) or (N, Z) float
        nuisance (standardized); weights : (N,) nuisance weights (ones for none).

    Returns
    -------
    dict with the held-out `info_estimate` (nats; ~0 for no dependence, it can be slightly
    negative by noise), `contrast_estimate`, `critic_auc`, `critic_bce` (see `critic_metrics`)
    of the epoch with the best held-out BCE, and `epochs` (the number of epochs trained).
    """
    if max_epochs < 1:
        raise ConfigError(f"max_epochs: expected an integer >= 1, got {max_epochs!r}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction: expected a value in (0, 1), got {val_fraction!r}")
    r, weights = r.detach().float(), weights.detach().to(r.device).float()
    y, z = y.detach().to(r.device), z.detach().to(r.device).float()
    n = r.shape[0]
    n_val = int(round(val_fraction * n))
    if n_val < 2 or n - n_val < 2:
        raise NurdadError(f"fit_fresh_critic: {n} samples are too few for a held-out split")
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    n_nuisance = 1 if z.ndim == 1 else z.shape[1]

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = Critic(r.shape[1], n_classes, n_nuisance, config).to(r.device)
    order = torch.randperm(n, generator=generator).to(r.device)
    val, train = order[:n_val], order[n_val:]
    val_generator_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))

    def held_out() -> dict[str, float]:
        fixed = torch.Generator().manual_seed(val_generator_seed)  # same randomization each epoch
        return critic_metrics(critic, r[val], y[val], z[val], weights[val], generator=fixed)

    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    best, stale, epochs = {"critic_bce": math.inf}, 0, 0
    while epochs < max_epochs and stale < patience:
        train_critic_steps(critic, optimizer, r[train], y[train], z[train], weights[train],
                           steps_per_epoch, batch_size, generator=generator)
        epochs += 1
        current = held_out()
        if current["critic_bce"] < best["critic_bce"] - min_delta:
            best, stale = current, 0
        else:
            stale += 1
    log.info("fresh critic: info %.4f nats, AUC %.3f, BCE %.4f after %d epochs",
             best["info_estimate"], best["critic_auc"], best["critic_bce"], epochs)
    return {**best, "epochs": epochs}
