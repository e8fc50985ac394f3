"""Noise-prediction networks. They map (x_t, t) to ε̂ and know nothing of the noise schedule."""

from .config import UNET_SIZES, MLPConfig, ModelConfig, UNetConfig, build_network, model_config_from_dict, unet_config

__all__ = [
    "UNET_SIZES",
    "MLPConfig",
    "ModelConfig",
    "UNetConfig",
    "build_network",
    "model_config_from_dict",
    "unet_config",
]
