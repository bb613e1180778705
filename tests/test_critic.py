"""The NuRD critic: permutations, losses, the fresh-critic dependence estimate, and the penalty."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nurdad.config import from_dict
from nurdad.errors import ConfigError, NurdadError
from nurdad.models.encoder import mlp
from nurdad.nurd.critic import (
    Critic,
    CriticConfig,
    critic_loss,
    dependence_penalty,
    fit_fresh_critic,
    permute_nuisance,
    train_critic_steps,
)
from nurdad.nurd.disco import disco_penalty
from nurdad.nurd.weights import WeightConfig, nuisance_weights


def toy_representations(n, dim, dependent, seed=0):
    """r (N, D) standard normal; if dependent, r[:, 0] = z + 0.5 noise (I(r; z) = log(5)/2 nats)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g)
    y = (torch.rand(n, generator=g) < 0.5).long()
    r = torch.randn(n, dim, generator=g)
    if dependent:
        r[:, 0] = z + 0.5 * torch.randn(n, generator=g)
    return r, y, z


def test_permute_nuisance_is_a_permutation_moving_rows_together():
    z = torch.arange(40.0).reshape(20, 2)
    permuted = permute_nuisance(z, generator=torch.Generator().manual_seed(0))
    assert sorted(permuted[:, 0].tolist()) == z[:, 0].tolist()
    torch.testing.assert_close(permuted[:, 1], permuted[:, 0] + 1)  # rows stay whole
    assert not torch.equal(permuted, z)
    again = permute_nuisance(z, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, permuted)


def test_permute_nuisance_within_classes():
    y = torch.tensor([0, 1] * 10)
    z = torch.arange(20.0)
    permuted = permute_nuisance(z, y, generator=torch.Generator().manual_seed(1))
    for k in (0, 1):
        assert sorted(permuted[y == k].tolist()) == z[y == k].tolist()
    assert not torch.equal(permuted, z)


def test_critic_shapes_and_modes():
    r, y, z = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(6)
    joint = Critic(4, 3, 1, CriticConfig(hidden=(16,)))
    assert joint(r, y, z).shape == (6,)
    assert not torch.allclose(joint(r, y, z), joint(r, (y + 1) % 3, z))
    marginal = Critic(4, 3, 2, CriticConfig(hidden=(16,), mode="marginal"))
    z2 = torch.randn(6, 2)
    torch.testing.assert_close(marginal(r, y, z2), marginal(r, (y + 1) % 3, z2))  # y unused
    with pytest.raises(NurdadError, match=r"\(B, 2\)"):
        marginal(r, y, z)


@pytest.mark.parametrize("values, field", [
    ({"hidden": []}, "critic.hidden"),
    ({"nuisance_embedding": 0}, "critic.nuisance_embedding"),
    ({"mode": "conditional"}, "critic.mode"),
    ({"penalty": "dv"}, "critic.penalty"),
])
def test_config_errors_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(CriticConfig, values, "critic")


def blind_critic(penalty="contrast"):
    """A critic whose last layer is zero: logit 0 for every input."""
    critic = Critic(3, 2, 1, CriticConfig(hidden=(8,), penalty=penalty))
    with torch.no_grad():
        critic.net[-1].weight.zero_()
        critic.net[-1].bias.zero_()
    return critic


def test_critic_loss_of_a_blind_critic_is_log_2_and_trains_both_halves():
    r, y, z = torch.randn(10, 3), torch.randint(0, 2, (10,)), torch.randn(10)
    critic = blind_critic()
    loss = critic_loss(critic, r, y, z, torch.rand(10) + 0.5)
    assert loss.item() == pytest.approx(math.log(2))
    with torch.no_grad():
        critic.net[-1].bias.fill_(2.0)  # says "joint" everywhere: joint half right, randomized wrong
    expected = 0.5 * (F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(2.0)))
    assert critic_loss(critic, r, y, z, torch.ones(10)).item() == pytest.approx(expected.item())


def test_joint_penalty_is_weighted_mean_joint_logit_and_only_moves_r():
    torch.manual_seed(0)
    critic = Critic(3, 2, 1, CriticConfig(hidden=(8,), penalty="joint"))
    r = torch.randn(10, 3, requires_grad=True)
    y, z, w = torch.randint(0, 2, (10,)), torch.randn(10), torch.rand(10) + 0.5
    penalty = dependence_penalty(critic, r, y, z, w)
    with torch.no_grad():
        expected = (w * critic(r, y, z)).sum() / w.sum()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    penalty.backward()
    assert r.grad is not None and r.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_contrast_penalty_ignores_a_constant_offset_of_the_critic():
    torch.manual_seed(0)
    critic = Critic(3, 2, 1, CriticConfig(hidden=(8,)))
    r, y, z, w = torch.randn(10, 3), torch.randint(0, 2, (10,)), torch.randn(10), torch.ones(10)
    before = dependence_penalty(critic, r, y, z, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        critic.net[-1].bias += 5.0
    after = dependence_penalty(critic, r, y, z, w, generator=torch.Generator().manual_seed(3))
    assert after.item() == pytest.approx(before.item(), abs=1e-5)
    assert dependence_penalty(blind_critic(), r, y, z, w).item() == 0.0


def test_fresh_critic_measures_dependence_and_independence():
    config = CriticConfig(hidden=(64, 32))
    r, y, z = toy_representations(6000, 8, dependent=True)
    dependent = fit_fresh_critic(r, y, z, torch.ones(6000), config, seed=0)
    r, y, z = toy_representations(6000, 8, dependent=False)
    independent = fit_fresh_critic(r, y, z, torch.ones(6000), config, seed=0)
    # true I(r; z) = 0.80 nats for the dependent toy, 0 for the independent one
    assert dependent["info_estimate"] > 0.5 and dependent["critic_auc"] > 0.75
    assert abs(independent["info_estimate"]) < 0.05 and abs(independent["critic_auc"] - 0.5) < 0.03
    assert abs(independent["contrast_estimate"]) < 0.05 < dependent["contrast_estimate"]
    assert independent["critic_bce"] == pytest.approx(math.log(2), abs=0.01)
    assert dependent["critic_bce"] < 0.6
    again = fit_fresh_critic(r, y, z, torch.ones(6000), config, seed=0)
    assert again == independent  # deterministic for a fixed seed


def test_fresh_critic_rejects_tiny_inputs():
    r, y, z = toy_representations(3, 2, dependent=False)
    with pytest.raises(NurdadError, match="too few"):
        fit_fresh_critic(r, y, z, torch.ones(3), CriticConfig())


def toy_planted_nuisance(n, seed):
    """x = [s, z, -z]: s ~ N(+-1, 0.8) carries y, the nuisance z ~ N(y, 1) is correlated with y."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    s = rng.normal(2.0 * y - 1.0, 0.8)
    z = rng.normal(1.0 * y, 1.0)
    w = nuisance_weights(y, z, WeightConfig())
    return (torch.tensor(np.c_[s, z, -z], dtype=torch.float32), torch.from_numpy(y),
            torch.tensor(z, dtype=torch.float32), torch.tensor(w, dtype=torch.float32))


def train_toy_encoder(lam, seed=0, epochs=20, batch_size=256, critic_steps=10, dependence="critic"):
    """Weighted-CE encoder (D = 4) penalized by a persistent critic trained on each batch before each
    step ('critic') or by the closed-form distance correlation ('disco')."""
    x, y, z, w = toy_planted_nuisance(4000, seed)
    torch.manual_seed(seed)
    encoder, head = mlp((3, 16, 16, 4)), torch.nn.Linear(4, 2)
    critic = Critic(4, 2, 1, CriticConfig(hidden=(64, 32)))
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            if lam > 0 and dependence == "critic":
                with torch.no_grad():
                    r = encoder(x[idx])
                train_critic_steps(critic, critic_optimizer, r, y[idx], z[idx], w[idx],
                                   critic_steps, batch_size, generator=g)
            r = encoder(x[idx])
            loss = (w[idx] * F.cross_entropy(head(r), y[idx], reduction="none")).mean()
            if lam > 0 and dependence == "critic":
                loss = loss + lam * dependence_penalty(critic, r, y[idx], z[idx], w[idx], g)
            elif lam > 0:
                loss = loss + lam * disco_penalty(r, y[idx], z[idx], w[idx], 2, critic.config.shrinkage)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x, y, z, w = toy_planted_nuisance(4000, seed + 100)  # fresh test set
    with torch.no_grad():
        r = encoder(x)
        accuracy = float((head(r).argmax(1) == y).float().mean())
    fresh = fit_fresh_critic(r, y, z, w, CriticConfig(hidden=(64, 32)), batch_size=256,
                             max_epochs=40, seed=seed)
    return accuracy, fresh


@pytest.mark.slow
@pytest.mark.parametrize("dependence", ["critic", "disco"])
def test_penalty_removes_the_planted_nuisance_and_keeps_accuracy(dependence):
    accuracy_0, fresh_0 = train_toy_encoder(lam=0.0)
    accuracy_3, fresh_3 = train_toy_encoder(lam=3.0, dependence=dependence)
    # measured (whitened critic input, shrinkage 1e-3): lambda 0 -> 1.63 nats, AUC 0.96, accuracy 0.91;
    # lambda 3: critic -> 0.53 nats, AUC 0.79, accuracy 0.90; disco -> 0.31 nats, AUC 0.70, accuracy 0.89
    assert fresh_0["info_estimate"] > 0.3 and fresh_0["critic_auc"] > 0.75
    assert fresh_3["info_estimate"] < 0.5 * fresh_0["info_estimate"]
    assert fresh_3["critic_auc"] < fresh_0["critic_auc"] - 0.1
    assert accuracy_0 > 0.8 and accuracy_3 > 0.8
