"""The jet encoder and the autoencoder: shapes, size accounting, per-jet scores, learnability."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import toy_images
from nurdad.config import from_dict
from nurdad.errors import ConfigError, NurdadError
from nurdad.models import (
    AutoencoderConfig,
    ConvAutoencoder,
    EncoderConfig,
    JetEncoder,
    count_macs,
    count_parameters,
)
from nurdad.models.encoder import PixelTransform


def toy_batch(n=4, size=50, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(toy_images(n, "two", rng, size))


def test_encoder_shapes_for_both_image_layouts():
    encoder = JetEncoder(EncoderConfig(representation_dim=20, n_classes=3))
    images = toy_batch(5)  # (B, H, W)
    logits, r = encoder(images)
    assert logits.shape == (5, 3) and r.shape == (5, 20)
    torch.testing.assert_close(encoder.representation(images.unsqueeze(1)), r)
    torch.testing.assert_close(encoder.head(r), logits)


def test_encoder_rejects_wrong_image_shape():
    encoder = JetEncoder(EncoderConfig())
    with pytest.raises(NurdadError, match=r"\(B, 1, 50, 50\)"):
        encoder(torch.zeros(2, 40, 40))
    with pytest.raises(NurdadError):
        encoder(torch.zeros(2, 3, 50, 50))


@pytest.mark.parametrize("values, field", [
    ({"representation_dim": 0}, "model.representation_dim"),
    ({"n_classes": 1}, "model.n_classes"),
    ({"channels": []}, "model.channels"),
    ({"image_size": 7}, "model.image_size"),  # 3 poolings need >= 8 pixels
    ({"pixel_transform": "cbrt"}, "model.pixel_transform"),
])
def test_encoder_config_errors_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        from_dict(EncoderConfig, values, "model")


def test_autoencoder_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="autoencoder.latent_dim"):
        AutoencoderConfig(latent_dim=0)
    with pytest.raises(ConfigError, match="autoencoder.pixel_transform"):
        AutoencoderConfig(pixel_transform="log10")


def test_count_parameters_and_macs_match_hand_computation():
    toy_model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )
    # conv: 2 * 9 weights + 2 biases; linear: 8 * 3 + 3
    assert count_parameters(toy_model) == 20 + 27
    # conv: 2 channels x 4 x 4 outputs x 9 taps; linear: 3 outputs x 8 inputs
    assert count_macs(toy_model, (1, 1, 4, 4)) == 288 + 24
    assert count_macs(toy_model, (7, 1, 4, 4)) == 288 + 24  # per jet, not per batch


def test_default_encoder_size_is_small_and_half_the_autoencoder():
    encoder = JetEncoder(EncoderConfig())
    convs = (1 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 * 32 * 9 + 32)
    dense = (32 * 6 * 6 * 64 + 64) + (64 * 20 + 20) + (20 * 2 + 2)
    assert count_parameters(encoder) == convs + dense == 81022
    macs = 50 * 50 * 8 * 9 + 25 * 25 * 16 * 8 * 9 + 12 * 12 * 32 * 16 * 9 + 1152 * 64 + 64 * 20 + 40
    assert count_macs(encoder) == macs
    autoencoder = ConvAutoencoder(AutoencoderConfig())
    assert count_parameters(encoder) < 0.55 * count_parameters(autoencoder)
    assert count_macs(encoder) < 0.55 * count_macs(autoencoder)


@pytest.mark.parametrize("kind", ["sqrt", "log"])
def test_pixel_transforms_keep_0_and_1_and_order(kind):
    pixels = torch.tensor([0.0, 1e-4, 1e-2, 0.3, 1.0])
    out = PixelTransform(kind)(pixels)
    assert out[0] == 0 and math.isclose(float(out[-1]), 1.0, rel_tol=1e-6)
    assert (out.diff() > 0).all()
    assert out[1] > 10 * pixels[1]  # soft pixels are lifted


@pytest.mark.parametrize("transform", ["none", "sqrt", "log"])
def test_autoencoder_shapes_and_score_is_mse_in_transformed_space(transform):
    torch.manual_seed(0)
    autoencoder = ConvAutoencoder(AutoencoderConfig(pixel_transform=transform, latent_dim=8))
    images = toy_batch(3)
    recon = autoencoder(images)
    assert recon.shape == (3, 1, 50, 50)
    target = PixelTransform(transform)(images.unsqueeze(1))
    expected = ((recon - target) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(autoencoder.reconstruction_error(images), expected)


def test_autoencoder_score_is_per_jet():
    torch.manual_seed(0)
    autoencoder = ConvAutoencoder(AutoencoderConfig())
    images = toy_batch(4)
    before = autoencoder.reconstruction_error(images)
    changed = images.clone()
    changed[2] = toy_batch(1, seed=9)[0]
    after = autoencoder.reconstruction_error(changed)
    keep = [0, 1, 3]
    torch.testing.assert_close(after[keep], before[keep])
    assert not torch.isclose(after[2], before[2])


def test_autoencoder_odd_image_size_round_trips():
    autoencoder = ConvAutoencoder(AutoencoderConfig(image_size=21, channels=(4, 8), dense=()))
    assert autoencoder(torch.rand(2, 21, 21)).shape == (2, 1, 21, 21)


def test_initial_representation_is_not_vanishingly_small():
    # PyTorch's default init gave r a spread of ~3e-4 on real jets and a stuck encoder
    torch.manual_seed(0)
    r = JetEncoder(EncoderConfig()).representation(toy_batch(64))
    assert r.std(dim=0).mean() > 1e-2


def test_encoder_learns_one_vs_two_prong_toy_images():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(np.concatenate([
        toy_images(64, "one", rng, 24), toy_images(64, "two", rng, 24)
    ]))
    labels = torch.repeat_interleave(torch.tensor([0, 1]), 64)
    torch.manual_seed(0)
    encoder = JetEncoder(EncoderConfig(image_size=24, channels=(8, 16)))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    for _ in range(30):
        loss = F.cross_entropy(encoder(images)[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.3
    assert (encoder(images)[0].argmax(1) == labels).float().mean() > 0.9
