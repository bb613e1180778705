"""Neural networks: the NuRD jet encoder (CNN -> representation, logits) and the autoencoder baseline."""

from nurdad.models.autoencoder import AutoencoderConfig, ConvAutoencoder
from nurdad.models.encoder import EncoderConfig, JetEncoder, count_macs, count_parameters

__all__ = [
    "AutoencoderConfig",
    "ConvAutoencoder",
    "EncoderConfig",
    "JetEncoder",
    "count_macs",
    "count_parameters",
]
