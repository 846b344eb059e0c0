"""Noise-predicting networks ``eps = net(x, t, y=None)``: a U-Net for images and a small
MLP for 2-D data, plus the blocks they are built from. Every network is registered
(``diffusion_lab.registry``) and rebuilds from ``type(net).__name__`` and ``net.config()``."""

from .blocks import Downsample, ResBlock, SelfAttention2d, Upsample
from .embeddings import ClassEmbedding, SinusoidalTimeEmbedding, TimeMLP
from .mlp import MLP
from .unet import UNet

__all__ = [
    "ClassEmbedding",
    "Downsample",
    "MLP",
    "ResBlock",
    "SelfAttention2d",
    "SinusoidalTimeEmbedding",
    "TimeMLP",
    "UNet",
    "Upsample",
]
