"""The NuRD jet encoder: a small CNN from a jet image to a representation r(x) and class logits.

The architecture follows the CNN encoder of "QCD or What?" (Heimel et al., SciPost Phys. 6, 030
(2019)) scaled down for FPGAs: blocks of conv3x3 (same padding) -> ReLU -> maxpool 2x2, flatten,
dense ReLU layers, a linear layer to the representation r (the "layer N-1" of the NuRD talk) and a
linear head to the logits over background classes. Only Conv2d, ReLU, MaxPool2d, Flatten and Linear
appear, so hls4ml can convert `JetEncoder.body`/`head`; the pixel transform is preprocessing.

The building blocks here (`PixelTransform`, `conv_blocks`, `mlp`) are shared with the autoencoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nurdad.errors import ConfigError, NurdadError

PIXEL_TRANSFORMS = ("none", "sqrt", "log")
LOG_EPSILON = 1e-3  # 'log' transform: log(1 + x/eps) / log(1 + 1/eps); pixels below eps are ~linear


@dataclass(frozen=True)
class EncoderConfig:
    image_size: int = 50  # pixels per side of the (square) jet image
    channels: tuple[int, ...] = (8, 16, 32)  # output channels of each conv3x3-ReLU-maxpool2 block
    dense: tuple[int, ...] = (64,)  # widths of the dense ReLU layers between flatten and r
    representation_dim: int = 20  # D: size of r(x), the output of layer N-1 (linear, no ReLU)
    n_classes: int = 2  # K: background classes (QCD, W/Z)
    pixel_transform: str = "sqrt"  # 'none' | 'sqrt' | 'log' on the unit-sum image before the CNN

    def __post_init__(self):
        _check_trunk(self, "model")
        _check_positive(self.representation_dim, "model.representation_dim")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ConfigError(f"model.n_classes: expected an integer >= 2, got {self.n_classes!r}")


class PixelTransform(nn.Module):
    """Elementwise intensity transform of unit-sum pT images (pixels in [0, 1]).

    Unit-sum jet images are very sparse and dominated by one or two hard pixels; 'sqrt' and 'log'
    lift the soft radiation that carries the substructure (and bring pixel values to O(0.1-1), the
    scale default initializations expect). 'log' is log(1 + x/eps) / log(1 + 1/eps) with eps = 1e-3,
    which keeps 0 -> 0 and 1 -> 1. Negative pixels (never produced by nurdad's images) are clamped
    to 0 for 'sqrt' and 'log'.
    """

    def __init__(self, kind: str):
        super().__init__()
        if kind not in PIXEL_TRANSFORMS:
            raise ConfigError(f"pixel_transform: expected one of {PIXEL_TRANSFORMS}, got {kind!r}")
        self.kind = kind

    def forward(self, images: Tensor) -> Tensor:
        if self.kind == "sqrt":
            return images.clamp_min(0).sqrt()
        if self.kind == "log":
            return torch.log1p(images.clamp_min(0) / LOG_EPSILON) / math.log1p(1 / LOG_EPSILON)
        return images

    def extra_repr(self) -> str:
        return repr(self.kind)


def conv_blocks(channels: tuple[int, ...], in_channels: int = 1) -> nn.Sequential:
    """conv3x3 (padding 1) -> ReLU -> maxpool 2x2 per entry of `channels`; halves H, W (floor)."""
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = out_channels
    return nn.Sequential(*layers)


def spatial_sizes(image_size: int, n_blocks: int) -> list[int]:
    """Side length after 0, 1, ..., n_blocks pooling blocks: e.g. 50 -> [50, 25, 12, 6]."""
    sizes = [image_size]
    for _ in range(n_blocks):
        sizes.append(sizes[-1] // 2)
    return sizes


def mlp(widths: tuple[int, ...], final_activation: bool = False) -> nn.Sequential:
    """Linear layers widths[0] -> widths[1] -> ... with ReLU between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def trunk(image_size: int, channels: tuple[int, ...], dense: tuple[int, ...], out_dim: int):
    """Conv blocks -> flatten -> dense ReLU layers -> Linear to `out_dim` (no final activation).

    (B, 1, H, W) -> (B, out_dim); the encoder body and the autoencoder's encoder half.
    """
    side = spatial_sizes(image_size, len(channels))[-1]
    flat = channels[-1] * side * side
    return nn.Sequential(
        conv_blocks(channels),
        nn.Flatten(),  # (B, C * side * side)
        mlp((flat, *dense), final_activation=True),
        nn.Linear(dense[-1] if dense else flat, out_dim),
    )


def channels_last(module: nn.Module) -> nn.Module:
    """Store the Conv2d weights channels-last (NHWC); inputs may stay (B, 1, H, W).

    PyTorch's CPU convolutions and max-pooling of these few-channel CNNs run much faster on NHWC:
    measured on 2 cores, 1 thread, batch 256, a training step 1.3-1.6x faster (encoder) and 2x
    (autoencoder), inference at batch 1024 1.75x; results agree with NCHW up to float rounding.
    Module.to(device) and load_state_dict keep the layout.
    """
    return module.to(memory_format=torch.channels_last)


def he_init(module: nn.Module) -> nn.Module:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every Conv2d and Linear.

    PyTorch's default init shrinks the signal at each layer; on sparse unit-sum jet images the
    initial representation then had a spread of ~3e-4 and a QCD vs W/Z encoder could sit at
    AUROC 0.5 for 15 epochs. With He init it reached 0.92 after one epoch on the same jets.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return module


def as_image_batch(images: Tensor, image_size: int) -> Tensor:
    """(B, H, W) or (B, 1, H, W) -> (B, 1, H, W) float; a clear error for any other shape."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2:] != (image_size, image_size):
        raise NurdadError(
            f"images: expected shape (B, 1, {image_size}, {image_size}) or "
            f"(B, {image_size}, {image_size}), got {tuple(images.shape)}"
        )
    return images.float()


class JetEncoder(nn.Module):
    """CNN encoder: unit-sum jet images (B, 1, H, W) -> (logits (B, K), representation (B, D)).

    Submodules: `transform` (pixel transform, preprocessing), `body` (CNN + dense -> r, FPGA part),
    `head` (Linear D -> K). The representation is linear (no ReLU) so that its class-conditional
    distributions are closer to Gaussian for the Mahalanobis score and have no point mass at 0.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.transform = PixelTransform(config.pixel_transform)
        self.body = trunk(
            config.image_size, config.channels, config.dense, config.representation_dim
        )
        self.head = nn.Linear(config.representation_dim, config.n_classes)
        channels_last(he_init(self))

    def representation(self, images: Tensor) -> Tensor:
        """r(x): (B, 1, H, W) or (B, H, W) unit-sum images -> (B, D)."""
        x = self.transform(as_image_batch(images, self.config.image_size))  # (B, 1, H, W)
        return self.body(x)  # (B, D)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, K), representation (B, D)); softmax(logits) estimates p(y | x)."""
        r = self.representation(images)
        return self.head(r), r


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable or not): the model's memory footprint in weights."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_shape: tuple[int, ...] = (1, 1, 50, 50)) -> int:
    """Multiply-accumulates per input (jet) of one forward pass, counting Conv2d and Linear layers.

    A Conv2d output element costs (C_in / groups) * kH * kW MACs, a Linear one in_features; biases,
    activations and pooling are not counted. Measured with forward hooks on a zero input of
    `input_shape` (first axis the batch) and divided by the batch size.
    """
    total = 0

    def hook(layer: nn.Module, _inputs, output: Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        else:
            total += output.numel() * layer.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            module(torch.zeros(input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total // input_shape[0]


def _check_positive(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")


def _check_trunk(config, section: str) -> None:
    """Validate the fields shared by encoder and autoencoder configs (image_size, channels, dense)."""
    _check_positive(config.image_size, f"{section}.image_size")
    if not config.channels:
        raise ConfigError(f"{section}.channels: expected at least one conv block, got ()")
    for value in config.channels:
        _check_positive(value, f"{section}.channels")
    for value in config.dense:
        _check_positive(value, f"{section}.dense")
    if config.image_size < 2 ** len(config.channels):
        raise ConfigError(
            f"{section}.image_size: {config.image_size} pixels cannot be pooled "
            f"{len(config.channels)} times; use >= {2 ** len(config.channels)} or fewer channels"
        )
    if config.pixel_transform not in PIXEL_TRANSFORMS:
        raise ConfigError(
            f"{section}.pixel_transform: expected one of {PIXEL_TRANSFORMS}, "
            f"got {config.pixel_transform!r}"
        )
