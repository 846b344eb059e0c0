"""Networks: embeddings, blocks, U-Net and MLP, checked against independent
re-computations, hand-counted parameters and properties that can fail."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusion_lab.nets import (
    MLP,
    ResBlock,
    SelfAttention2d,
    SinusoidalTimeEmbedding,
    TimeMLP,
    UNet,
)
from diffusion_lab.registry import lookup


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def perturb_(module, seed=1, scale=0.1):
    """Give a zero-initialised layer random weights so the output depends on the input."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen(seed), dtype=p.dtype))
    return module


def tiny_unet(**kw):
    cfg = dict(base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,), image_size=8,
               groups=4, heads=2)
    cfg.update(kw)
    torch.manual_seed(0)
    return UNet(**cfg).double()


# ----------------------------------------------------------------------------- embeddings

def test_sinusoidal_embedding_matches_independent_formula():
    dim, max_period, s = 16, 10000.0, 1000.0
    emb = SinusoidalTimeEmbedding(dim, max_period)
    half = dim // 2
    omega = max_period ** (-np.arange(half) / half)
    np.testing.assert_allclose(emb.frequencies(torch.float64).numpy(), omega, rtol=1e-12)
    assert omega[0] == 1.0 and math.isclose(omega[-1], max_period ** (-(half - 1) / half))
    t = torch.tensor([0.0, 0.001, 0.37, 1.0], dtype=torch.float64)
    expected = np.concatenate([np.sin(s * t.numpy()[:, None] * omega),
                               np.cos(s * t.numpy()[:, None] * omega)], axis=1)
    np.testing.assert_allclose(emb(t).numpy(), expected, rtol=0, atol=1e-12)
    # t = 0: sines vanish, cosines are one
    assert torch.equal(emb(torch.zeros(1, dtype=torch.float64))[0],
                       torch.cat([torch.zeros(half), torch.ones(half)]).double())


def test_sinusoidal_embedding_separates_all_ddpm_steps():
    emb = SinusoidalTimeEmbedding(32)
    t = torch.arange(1001, dtype=torch.float64) / 1000
    e = emb(t)
    d = torch.cdist(e, e) + torch.eye(1001, dtype=torch.float64) * 1e9
    # every pair of the 1001 DDPM times is far apart (each vector has norm sqrt(16) = 4)
    assert d.min() > 0.5
    assert torch.allclose(e.norm(dim=1), torch.full((1001,), 4.0, dtype=torch.float64))


def test_embedding_rejects_bad_input():
    with pytest.raises(ValueError, match="dim"):
        SinusoidalTimeEmbedding(15)
    with pytest.raises(ValueError, match="t must"):
        SinusoidalTimeEmbedding(8)(torch.zeros(2, 1))


def test_time_mlp_is_embedding_then_linear_silu_linear():
    torch.manual_seed(0)
    m = TimeMLP(8, 12).double()
    t = torch.rand(5, dtype=torch.float64)
    l1, l2 = m.net[0], m.net[2]
    e = SinusoidalTimeEmbedding(8)(t)
    expected = F.linear(F.silu(F.linear(e, l1.weight, l1.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(m(t), expected)


# ----------------------------------------------------------------------------- blocks

def resblock_params(cin, cout, tdim):
    n = 2 * cin + 9 * cin * cout + cout + 2 * cout * (tdim + 1) + 2 * cout + 9 * cout**2 + cout
    return n + (cin * cout + cout if cin != cout else 0)


def attention_params(c):
    return 2 * c + 3 * c * c + 3 * c + c * c + c


@pytest.mark.parametrize("cin,cout", [(8, 8), (8, 16)])
def test_resblock_matches_independent_computation(cin, cout):
    torch.manual_seed(0)
    block = ResBlock(cin, cout, time_dim=6, groups=4).double()
    for p in block.parameters():           # non-trivial norm affines and biases
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, cin, 5, 5, generator=gen(1), dtype=torch.float64)
    emb = torch.randn(3, 6, generator=gen(2), dtype=torch.float64)
    b = block
    h = F.conv2d(F.silu(F.group_norm(x, 4, b.norm1.weight, b.norm1.bias)), b.conv1.weight,
                 b.conv1.bias, padding=1)
    ss = F.silu(emb) @ b.time_proj.weight.T + b.time_proj.bias
    scale, shift = ss[:, :cout, None, None], ss[:, cout:, None, None]
    h = F.group_norm(h, 4, b.norm2.weight, b.norm2.bias) * (1 + scale) + shift
    h = F.conv2d(F.silu(h), b.conv2.weight, b.conv2.bias, padding=1)
    skip = x if cin == cout else F.conv2d(x, b.skip.weight, b.skip.bias)
    torch.testing.assert_close(block(x, emb), h + skip)
    assert sum(p.numel() for p in block.parameters()) == resblock_params(cin, cout, 6)


def test_resblock_time_injection():
    torch.manual_seed(0)
    block = ResBlock(8, 8, time_dim=4, groups=2).double().eval()
    x = torch.randn(2, 8, 4, 4, generator=gen(1), dtype=torch.float64)
    e1 = torch.randn(2, 4, generator=gen(2), dtype=torch.float64)
    e2 = torch.randn(2, 4, generator=gen(3), dtype=torch.float64)
    assert (block(x, e1) - block(x, e2)).abs().max() > 1e-2      # time reaches the output
    with torch.no_grad():                   # zero projection: scale = shift = 0, no time effect
        block.time_proj.weight.zero_()
        block.time_proj.bias.zero_()
    torch.testing.assert_close(block(x, e1), block(x, e2), rtol=0, atol=0)
    with torch.no_grad():                   # pure shift b: equals folding b into GN2's bias
        block.time_proj.bias[8:] = 0.5
    shifted = block(x, e1)
    with torch.no_grad():
        block.time_proj.bias.zero_()
        block.norm2.bias += 0.5
    torch.testing.assert_close(shifted, block(x, e1))


def test_attention_matches_explicit_softmax_and_is_permutation_equivariant():
    torch.manual_seed(0)
    C, heads, H, W = 8, 2, 3, 4
    attn = SelfAttention2d(C, heads, groups=4).double()
    x = torch.randn(2, C, H, W, generator=gen(1), dtype=torch.float64)
    # independent multi-head attention
    xn = F.group_norm(x, 4, attn.norm.weight, attn.norm.bias).flatten(2)        # [B, C, N]
    qkv = torch.einsum("oc,bcn->bon", attn.qkv.weight[:, :, 0, 0], xn) + attn.qkv.bias[:, None]
    q, k, v = qkv.chunk(3, dim=1)
    d = C // heads
    outs = []
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        w = torch.softmax(torch.einsum("bcn,bcm->bnm", q[:, sl], k[:, sl]) / math.sqrt(d), -1)
        outs.append(torch.einsum("bnm,bcm->bcn", w, v[:, sl]))
    o = torch.cat(outs, 1)
    o = torch.einsum("oc,bcn->bon", attn.proj.weight[:, :, 0, 0], o) + attn.proj.bias[:, None]
    torch.testing.assert_close(attn(x), x + o.reshape(x.shape))

    perm = torch.randperm(H * W, generator=gen(2))

    def permute(z):
        return z.flatten(2)[:, :, perm].reshape(z.shape)

    torch.testing.assert_close(attn(permute(x)), permute(attn(x)))
    # the same check fails for a 3x3 convolution, which sees spatial neighbours
    conv = torch.nn.Conv2d(C, C, 3, padding=1).double()
    assert (conv(permute(x)) - permute(conv(x))).abs().max() > 1e-2
    # and attention mixes positions: changing one position changes all the others
    x2 = x.clone()
    x2[:, :, 0, 0] += 1.0
    change = (attn(x2) - attn(x)).abs().amax(dim=1)             # [B, H, W]
    assert (change.flatten(1)[:, 1:] > 1e-6).all()
    assert sum(p.numel() for p in attn.parameters()) == attention_params(C)


# ----------------------------------------------------------------------------- UNet

@pytest.mark.parametrize("size,ch,attn", [(28, 1, (7,)), (28, 3, (7,)), (32, 1, (8,)),
                                          (32, 3, (16, 8))])
def test_unet_shapes_and_zero_init(size, ch, attn):
    net = UNet(in_channels=ch, base_channels=8, attention_resolutions=attn, image_size=size,
               groups=4)
    x = torch.randn(2, ch, size, size, generator=gen())
    out = net(x, torch.rand(2, generator=gen(1)))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))                 # zero-initialised final conv
    net2 = UNet(in_channels=ch, out_channels=2 * ch, base_channels=8,
                attention_resolutions=attn, image_size=size, groups=4)
    assert net2(x, torch.rand(2)).shape == (2, 2 * ch, size, size)


def test_unet_output_depends_on_t_and_y_and_null_label():
    net = tiny_unet(num_classes=3)
    perturb_(net.out_conv)
    x = torch.randn(4, 1, 8, 8, generator=gen(), dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    base = net(x, t, y)
    assert (net(x, t + 0.4, y) - base).abs().max() > 1e-3
    assert (net(x, t, torch.tensor([1, 2, 0, 1])) - base).abs().amax(dim=(1, 2, 3)).min() > 1e-4
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((4,), 3)), rtol=0, atol=0)
    # each sample only sees its own label
    mixed = net(x, t, torch.tensor([0, 1, 3, 3]))
    torch.testing.assert_close(mixed[:2], base[:2], rtol=0, atol=0)


def test_unet_parameter_count_hand_formula():
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1,), num_res_blocks=1,
               attention_resolutions=(), image_size=8, groups=4, num_classes=10)
    c, td = 8, 32
    expected = (8 * td + td + td * td + td            # TimeMLP
                + 11 * td                             # class table, 10 + null rows
                + 1 * c * 9 + c                       # stem
                + resblock_params(c, c, td)           # down
                + 2 * resblock_params(c, c, td) + attention_params(c)       # middle
                + 2 * resblock_params(2 * c, c, td)   # up, with concatenated skips
                + 2 * c + c * 9 + 1)                  # out norm + conv
    assert net.num_parameters() == expected
    assert net.num_parameters() == sum(v.numel() for v in net.state_dict().values())
    default = UNet()
    assert default.num_parameters() == sum(p.numel() for p in default.parameters())


def test_unet_gradient_reaches_every_parameter():
    net = tiny_unet(num_classes=3, dropout=0.1)
    perturb_(net.out_conv)
    x = torch.randn(3, 1, 8, 8, generator=gen(), dtype=torch.float64)
    out = net(x, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), torch.tensor([0, 1, 3]))
    out.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_unet_config_round_trip_through_registry():
    net = tiny_unet(num_classes=3, num_res_blocks=2)
    perturb_(net.out_conv)
    cfg = json.loads(json.dumps(net.config()))
    clone = lookup("UNet")(**cfg).double()
    clone.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, 8, 8, generator=gen(), dtype=torch.float64)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    torch.testing.assert_close(clone(x, t, torch.tensor([1, 3])), net(x, t, torch.tensor([1, 3])))
    assert clone.config() == net.config()


def test_unet_errors_name_the_argument():
    net = tiny_unet(num_classes=3)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    t = torch.full((2,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^x must have shape \[B, 1, 8, 8\]"):
        net(torch.zeros(2, 3, 8, 8, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="^t must"):
        net(x, torch.full((3,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="^t must lie in"):
        net(x, torch.full((2,), 1.5, dtype=torch.float64))
    with pytest.raises(TypeError, match="^t must"):
        net(x, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"^y must lie in \[0, 3\]"):
        net(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="^y must lie"):
        net(x, t, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="^y must be an integer"):
        net(x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^y must have shape \[B\]"):
        net(x, t, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="^y must be None"):
        tiny_unet()(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="attention_resolutions"):
        UNet(image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        UNet(image_size=30, attention_resolutions=())
    with pytest.raises(ValueError, match="groups"):
        UNet(base_channels=12, groups=8)


# ----------------------------------------------------------------------------- MLP

def test_mlp_matches_formula_and_conditions_on_t_and_y():
    torch.manual_seed(0)
    net = MLP(dim=2, hidden=16, layers=2, time_dim=8, num_classes=4).double()
    x = torch.randn(5, 2, generator=gen(), dtype=torch.float64)
    t = torch.rand(5, generator=gen(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4])
    assert torch.equal(net(x, t, y), torch.zeros_like(x))        # zero-initialised output
    perturb_(net.out, scale=0.5)
    emb = net.time_mlp(t) + net.class_emb.table.weight[y]
    h = x
    for lin, cond in zip(net.linears, net.conds, strict=True):
        h = F.silu(lin(h) + cond(emb))
    torch.testing.assert_close(net(x, t, y), net.out(h))
    assert (net(x, t.flip(0), y) - net(x, t, y)).abs().max() > 1e-3
    assert (net(x, t, y.flip(0)) - net(x, t, y)).abs().max() > 1e-3
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((5,), 4)), rtol=0, atol=0)
    expected = (8 * 8 + 8 + 8 * 8 + 8) + 5 * 8 + (2 * 16 + 16) + (16 * 16 + 16) \
        + 2 * (8 * 16 + 16) + (16 * 2 + 2)
    assert net.num_parameters() == expected == sum(p.numel() for p in net.parameters())


def test_mlp_gradients_round_trip_and_errors():
    net = MLP(num_classes=2).double()
    perturb_(net.out)
    x = torch.randn(6, 2, generator=gen(), dtype=torch.float64)
    net(x, torch.rand(6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    clone = lookup("MLP")(**json.loads(json.dumps(net.config()))).double()
    clone.load_state_dict(net.state_dict())
    t = torch.full((6,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(clone(x, t), net(x, t))
    with pytest.raises(ValueError, match=r"^x must have shape \[B, 2\]"):
        net(torch.zeros(6, 3, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="^t must"):
        net(x, t[:3])
    with pytest.raises(ValueError, match="^y must lie"):
        net(x, t, torch.full((6,), 3))
    with pytest.raises(ValueError, match="^y must be None"):
        MLP().double()(x, t, torch.zeros(6, dtype=torch.long))
