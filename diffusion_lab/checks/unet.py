"""Checkers for lesson 04, the U-Net (``exercises/04_*.ipynb``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nets.blocks import ResBlock
from ..nets.embeddings import SinusoidalTimeEmbedding
from ._common import F64, FAIL, PASS, _call, _compare, _gen, _randn, _say, _Stop, _uniform, checker


@checker("time_embedding")
def check_time_embedding(fn) -> bool:
    """``fn(t [B], dim) -> [B, dim]``: [sin(1000 t ω_k), cos(1000 t ω_k)], ω_k = 10000^(−k/half)."""

    name = "time_embedding"
    t = _uniform(5, 0.0, 1.0, _gen(8))
    dim = 16
    want = SinusoidalTimeEmbedding(dim)(t)
    half = dim // 2
    k = torch.arange(half, dtype=F64)

    def emb(freqs, scale=1000.0, order=("sin", "cos")):
        a = scale * t[:, None] * freqs[None]
        parts = {"sin": torch.sin(a), "cos": torch.cos(a)}
        return torch.cat([parts[order[0]], parts[order[1]]], 1)

    w = torch.exp(-math.log(10000.0) * k / half)
    inter = torch.stack([torch.sin(1000 * t[:, None] * w), torch.cos(1000 * t[:, None] * w)], -1)
    wrong = {
        "the sines come first, then the cosines": emb(w, order=("cos", "sin")),
        "t must be multiplied by time_scale = 1000 first (t is in [0, 1], the frequencies "
        "were designed for step indices 0..1000)": emb(w, scale=1.0),
        "the exponent is −k/half, not −k/(half − 1)":
            emb(torch.exp(-math.log(10000.0) * k / (half - 1))),
        "the frequencies must decrease, ω_k = 10000^(−k/half), not increase":
            emb(torch.exp(math.log(10000.0) * k / half)),
        "sines and cosines are interleaved; concatenate [all sines, all cosines]":
            inter.reshape(5, dim),
    }
    return _compare(name, _call(name, fn, t.clone(), dim), want, wrong, rtol=1e-6, atol=1e-6,
                    ok="matches SinusoidalTimeEmbedding(16) on 5 random times")


@checker("resblock_params")
def check_resblock_params(fn) -> bool:
    """``fn(in_ch, out_ch, time_dim) -> int``, the number of parameters of
    ``ResBlock(in_ch, out_ch, time_dim)`` (GroupNorm affine, biases and the 1×1 skip included)."""

    name = "resblock_params"
    for cin, cout, tdim in ((32, 64, 128), (64, 64, 256), (16, 8, 32)):
        want = sum(p.numel() for p in ResBlock(cin, cout, tdim).parameters())
        got = _call(name, fn, cin, cout, tdim)
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int) or isinstance(got, bool):
            _say(FAIL, name, f"return an int, got {type(got).__name__}")
            raise _Stop
        if got == want:
            continue
        skip = cin * cout + cout if cin != cout else 0
        biases = cout + 2 * cout + cout + (cout if cin != cout else 0)
        wrong = {  # the count each typical slip gives -> its diagnosis
            want - biases: "the biases are missing (each conv and linear layer has one)",
            want - 2 * cin - 2 * cout: "the GroupNorm scale and shift (2 per channel) are missing",
            want - tdim * cout - cout: "time_proj outputs 2·out_ch values (a scale and a shift "
                                       "per channel), not out_ch",
            want - 8 * cin * cout - 8 * cout * cout: "the convolutions are 3×3: 9 weights per "
                                                     "input-output channel pair",
        }
        if cin != cout:
            wrong[want - skip] = "the 1×1 skip convolution (in_ch ≠ out_ch) is missing"
        else:
            wrong[want + cin * cout + cout] = ("there is no skip convolution when in_ch = out_ch "
                                               "(the skip is the identity)")
        text = wrong.get(got, "")
        _say(FAIL, name, f"ResBlock({cin}, {cout}, {tdim}) has {want} parameters, you counted "
                         f"{got}" + (f": {text}" if text else f" (off by {got - want})"))
        raise _Stop
    _say(PASS, name, "matches sum(p.numel()) of ResBlock for (32, 64, 128), (64, 64, 256), "
                     "(16, 8, 32)")
    return True


@checker("attention")
def check_attention(fn) -> bool:
    """``fn(q, k, v)``, each ``[B, heads, N, d]`` -> softmax(q kᵀ/√d) v, ``[B, heads, N, d]``."""
    name = "attention"
    g = _gen(9)
    B, H, N, d = 2, 3, 5, 4
    q, k, v = (_randn((B, H, N, d), g) for _ in range(3))
    scores = q @ k.transpose(-1, -2)
    want = F.scaled_dot_product_attention(q, k, v)  # what SelfAttention2d calls
    wrong = {
        "the scores must be divided by √d (the 1/√d keeps the softmax from saturating)":
            torch.softmax(scores, -1) @ v,
        "divide the scores by √d, not by d": torch.softmax(scores / d, -1) @ v,
        "the softmax is over the keys (last axis), each query's weights sum to 1":
            torch.softmax(scores / math.sqrt(d), -2) @ v,
        "multiply the weights by v: softmax(q kᵀ/√d) v": torch.softmax(scores / math.sqrt(d), -1)
        @ q,
    }
    return _compare(name, _call(name, fn, q.clone(), k.clone(), v.clone()), want, wrong,
                    ok="matches F.scaled_dot_product_attention on a random batch "
                       "[2, 3 heads, 5 positions, d = 4]")
