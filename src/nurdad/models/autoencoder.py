"""Convolutional autoencoder baseline: anomaly score = per-jet reconstruction error.

The encoder half is the same family as `JetEncoder` (shared `trunk`); the decoder mirrors it
(Linear layers back to the flattened conv volume, then nearest-neighbour upsampling to the encoder's
spatial sizes, each followed by conv3x3). Input and target are the *transformed* image: on raw
unit-sum images an MSE autoencoder is dominated by the few hard pixels and scores the sparse QCD jets
as more anomalous than diffuse top jets ("complexity bias"; Finke et al., JHEP06(2021)161), so a fair
baseline compresses the intensities first ('sqrt' or 'log', as in "QCD or What?" and
Farina-Nakai-Shih). Which transform works best is a tuning question for the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from nurdad.models.encoder import (
    PixelTransform,
    _check_positive,
    _check_trunk,
    as_image_batch,
    channels_last,
    he_init,
    mlp,
    spatial_sizes,
    trunk,
)


@dataclass(frozen=True)
class AutoencoderConfig:
    image_size: int = 50  # pixels per side of the (square) jet image
    channels: tuple[int, ...] = (8, 16, 32)  # encoder conv3x3-ReLU-maxpool2 blocks (mirrored)
    dense: tuple[int, ...] = (64,)  # dense ReLU widths between flatten and latent (mirrored)
    latent_dim: int = 20  # bottleneck size
    pixel_transform: str = "sqrt"  # 'none' | 'sqrt' | 'log': applied to input and target alike

    def __post_init__(self):
        _check_trunk(self, "autoencoder")
        _check_positive(self.latent_dim, "autoencoder.latent_dim")


class ConvAutoencoder(nn.Module):
    """Unit-sum jet images (B, 1, H, W) or (B, H, W) -> reconstruction of the transformed image."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        sizes = spatial_sizes(config.image_size, len(config.channels))  # e.g. [50, 25, 12, 6]
        flat = config.channels[-1] * sizes[-1] ** 2
        self.transform = PixelTransform(config.pixel_transform)
        self.encoder = trunk(config.image_size, config.channels, config.dense, config.latent_dim)
        decoder: list[nn.Module] = [
            mlp((config.latent_dim, *config.dense[::-1], flat), final_activation=True),
            nn.Unflatten(1, (config.channels[-1], sizes[-1], sizes[-1])),
        ]
        out_channels = (*config.channels[-2::-1], 1)  # (16, 8, 1) for channels (8, 16, 32)
        in_channels = config.channels[-1]
        for i, (size, n_out) in enumerate(zip(sizes[-2::-1], out_channels, strict=True)):
            decoder += [nn.Upsample(size=(size, size)), nn.Conv2d(in_channels, n_out, 3, padding=1)]
            if i < len(out_channels) - 1:
                decoder.append(nn.ReLU())
            in_channels = n_out
        self.decoder = nn.Sequential(*decoder)
        channels_last(he_init(self))

    def target(self, images: Tensor) -> Tensor:
        """The transformed image the autoencoder reconstructs, (B, 1, H, W)."""
        return self.transform(as_image_batch(images, self.config.image_size))

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruction in transformed pixel space, (B, 1, H, W)."""
        return self.decoder(self.encoder(self.target(images)))

    def reconstruction_error(self, images: Tensor) -> Tensor:
        """Per-jet MSE in transformed space, (B,): the anomaly score (higher = more anomalous)."""
        target = self.target(images)
        return (self.decoder(self.encoder(target)) - target).square().mean(dim=(1, 2, 3))
