"""MogaNet's building blocks: the multi-order gated aggregation (spatial mixing), the channel-aggregation FFN,
the block that joins them, and the stems. Shapes are [B, C, H, W] throughout.

Names and parameter layout follow the authors' reference code, so released checkpoints load unchanged
(`moga_lab.models.moganet` assembles these into the network).
"""
from typing import Callable, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

__all__ = ['GATE_ACTIVATIONS', 'STEM_STRIDES', 'make_activation', 'same_dwconv', 'same_dwconv_args', 'ElementScale',
           'ChannelAggregationFFN', 'MultiOrderDWConv', 'MultiOrderGatedAggregation', 'MogaBlock', 'ConvPatchEmbed',
           'StackConvPatchEmbed']

# activations the paper's gating ablation compares (Table / Fig. "gating"); names are lower case
GATE_ACTIVATIONS = {
    'silu': nn.SiLU,
    'sigmoid': nn.Sigmoid,
    'gelu': nn.GELU,
    'identity': nn.Identity,
}
STEM_STRIDES = (1, 2, 4)


# oneDNN's depth-wise JIT kernel handles at most 6 rows/columns of implicit zero padding; beyond that (the 7x7
# dilation-3 conv pads 9) it falls back to a kernel 7-9x slower in inference and ~2.5x in training (measured on
# this machine, both memory formats). Padding the excess explicitly keeps the fast kernel: same taps, same output.
_ONEDNN_MAX_PAD = 6


def same_dwconv_args(conv: nn.Conv2d, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
    """(input, weight, padding) for ``F.conv2d`` computing `same_dwconv`: only the kernel taps that can read
    ``x``, and on CPU the padding beyond oneDNN's fast-kernel limit applied to the input explicitly."""
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    h, w = x.shape[-2:]
    rh, rw = min(kh // 2, (h - 1) // dh), min(kw // 2, (w - 1) // dw)
    weight = conv.weight
    if rh != kh // 2 or rw != kw // 2:
        weight = weight[:, :, kh // 2 - rh:kh // 2 + rh + 1, kw // 2 - rw:kw // 2 + rw + 1]
    ph, pw = dh * rh, dw * rw
    if x.device.type == 'cpu' and max(ph, pw) > _ONEDNN_MAX_PAD:
        eh, ew = max(0, ph - _ONEDNN_MAX_PAD), max(0, pw - _ONEDNN_MAX_PAD)
        x = F.pad(x, (ew, ew, eh, eh))
        ph, pw = ph - eh, pw - ew
    return x, weight, (ph, pw)


def same_dwconv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a stride-1, zero-padded 'same' conv, skipping kernel taps that only ever read padding.

    A dilated tap at offset ``o = d * (i - k // 2)`` reads the input only if ``|o| < H``; on small maps (the
    7x7 dilation-3 kernel on 7x7 or 4x4 maps of the last stages, or any map at 28 px input) most taps read
    zeros, and oneDNN still pays for them in both passes (a 7x7/d3 DW conv on a 7x7 map is ~10x slower than
    the equivalent cropped 5x5/d3). Dropping those taps gives the same output (their products are exact
    zeros) and the same gradients (the dropped weights get exact zero gradients either way).
    """
    x, weight, padding = same_dwconv_args(conv, x)
    return F.conv2d(x, weight, conv.bias, 1, padding, conv.dilation, conv.groups)


torch.fx.wrap('same_dwconv')


def make_activation(name: str, what: str) -> nn.Module:
    key = str(name).lower()
    if key not in GATE_ACTIVATIONS:
        raise ValueError(f'{what}={name!r} is not supported; accepted: {sorted(GATE_ACTIVATIONS)}')
    return GATE_ACTIVATIONS[key]()


class ElementScale(nn.Module):
    """Learnable per-channel scale, ``x * scale`` with ``scale`` of shape [1, C, 1, 1]."""

    def __init__(self, embed_dims: int, init_value: float = 0., requires_grad: bool = True):
        super().__init__()
        self.scale = nn.Parameter(init_value * torch.ones((1, embed_dims, 1, 1)), requires_grad=requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ChannelAggregationFFN(nn.Module):
    """FFN with channel aggregation (CA).

    [B, C, H, W] -> fc1 -> DW 3x3 -> act -> CA -> fc2 -> [B, C, H, W], hidden width ``feedforward_channels``.
    CA re-weights the hidden features against their projection to one channel:
    ``x + sigma * (x - act(decompose(x)))``. ``channel_aggregation=False`` gives the plain DW-conv FFN
    of the paper's ablation (no ``decompose`` / ``sigma`` parameters).
    """

    def __init__(
            self,
            embed_dims: int,
            feedforward_channels: int,
            kernel_size: int = 3,
            act_layer: Callable[[], nn.Module] = nn.GELU,
            ffn_drop: float = 0.,
            channel_aggregation: bool = True,
    ):
        super().__init__()
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.fc1 = nn.Conv2d(embed_dims, feedforward_channels, kernel_size=1)
        self.dwconv = nn.Conv2d(
            feedforward_channels, feedforward_channels, kernel_size=kernel_size,
            padding=kernel_size // 2, groups=feedforward_channels)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(feedforward_channels, embed_dims, kernel_size=1)
        self.drop = nn.Dropout(ffn_drop)
        self.channel_aggregation = channel_aggregation
        if channel_aggregation:
            self.decompose = nn.Conv2d(feedforward_channels, 1, kernel_size=1)  # C -> 1
            self.sigma = ElementScale(feedforward_channels, init_value=1e-5)
            self.decompose_act = act_layer()

    def feat_decompose(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C', H, W]; decompose(x): [B, 1, H, W]
        # x + sigma * (x - d) as one addcmul: one pass and one temporary fewer, forward and backward
        return torch.addcmul(x, x - self.decompose_act(self.decompose(x)), self.sigma.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(same_dwconv(self.dwconv, self.fc1(x))))
        if self.channel_aggregation:
            x = self.feat_decompose(x)
        return self.drop(self.fc2(x))


def _split_channels(embed_dims: int, channel_split: Sequence[int]) -> Tuple[int, int, int]:
    """Channels of the three orders, as the reference computes them (the remainder goes to order 0)."""
    total = sum(channel_split)
    c1 = int(channel_split[1] / total * embed_dims)
    c2 = int(channel_split[2] / total * embed_dims)
    return embed_dims - c1 - c2, c1, c2


class MultiOrderDWConv(nn.Module):
    """Multi-order depth-wise convolutions: [B, C, H, W] -> [B, C, H, W].

    DW 5x5 (dilation d0) on all channels, then DW 5x5 (d1) on the middle split and DW 7x7 (d2) on the last
    split; the three orders are concatenated and mixed by a point-wise conv. Channel split 1:3:4 by default.
    A split of 0 removes that branch (ablation 1:0:0 = a single order).
    """

    def __init__(
            self,
            embed_dims: int,
            dw_dilation: Sequence[int] = (1, 2, 3),
            channel_split: Sequence[int] = (1, 3, 4),
    ):
        super().__init__()
        self.embed_dims = embed_dims
        self.embed_dims_0, self.embed_dims_1, self.embed_dims_2 = _split_channels(embed_dims, channel_split)
        self.DW_conv0 = nn.Conv2d(
            embed_dims, embed_dims, kernel_size=5, padding=2 * dw_dilation[0],
            groups=embed_dims, dilation=dw_dilation[0])
        self.DW_conv1 = nn.Conv2d(
            self.embed_dims_1, self.embed_dims_1, kernel_size=5, padding=2 * dw_dilation[1],
            groups=self.embed_dims_1, dilation=dw_dilation[1]) if self.embed_dims_1 else None
        self.DW_conv2 = nn.Conv2d(
            self.embed_dims_2, self.embed_dims_2, kernel_size=7, padding=3 * dw_dilation[2],
            groups=self.embed_dims_2, dilation=dw_dilation[2]) if self.embed_dims_2 else None
        self.PW_conv = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)

    def multi_order(self, x: torch.Tensor, dwconv=None) -> torch.Tensor:
        """The three orders concatenated, before ``PW_conv``: [B, C, H, W] -> [B, C, H, W]. ``dwconv(conv, x)``
        applies one depth-wise conv (default `same_dwconv`; the fused inference model passes one with its weights
        cast once)."""
        # (the module-level name is looked up at call time: torch.fx.wrap swaps it while tracing)
        dwconv = same_dwconv if dwconv is None else dwconv
        x_0 = dwconv(self.DW_conv0, x)
        parts = [x_0[:, :self.embed_dims_0]]
        if self.DW_conv1 is not None:
            parts.append(dwconv(self.DW_conv1, x_0[:, self.embed_dims_0:self.embed_dims_0 + self.embed_dims_1]))
        if self.DW_conv2 is not None:
            parts.append(dwconv(self.DW_conv2, x_0[:, self.embed_dims - self.embed_dims_2:]))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.PW_conv(self.multi_order(x))


class MultiOrderGatedAggregation(nn.Module):
    """Spatial aggregation block (Moga): [B, C, H, W] -> [B, C, H, W].

    ``proj_1`` -> feature decomposition (FD: ``x + sigma * (x - GAP(x))``) -> act, then
    ``proj_2(act(gate(x)) * act(value(x)))`` + shortcut, with ``value`` the multi-order DW convs.
    ``gating=False`` drops the gate branch: ``proj_2(act(value(x)))``.
    ``feat_decompose=False`` drops FD: ``act(proj_1(x))``.
    """

    def __init__(
            self,
            embed_dims: int,
            attn_dw_dilation: Sequence[int] = (1, 2, 3),
            attn_channel_split: Sequence[int] = (1, 3, 4),
            attn_act_type: str = 'silu',
            attn_force_fp32: bool = False,
            gating: bool = True,
            feat_decompose: bool = True,
    ):
        super().__init__()
        self.embed_dims = embed_dims
        self.attn_force_fp32 = attn_force_fp32
        self.gating = gating
        self.use_feat_decompose = feat_decompose
        self.proj_1 = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)
        self.gate = nn.Conv2d(embed_dims, embed_dims, kernel_size=1) if gating else None
        self.value = MultiOrderDWConv(embed_dims, dw_dilation=attn_dw_dilation, channel_split=attn_channel_split)
        self.proj_2 = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)
        self.act_value = make_activation(attn_act_type, 'gate_act')
        self.act_gate = make_activation(attn_act_type, 'gate_act')
        if feat_decompose:
            self.sigma = ElementScale(embed_dims, init_value=1e-5)

    def feat_decompose(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_1(x)
        if self.use_feat_decompose:
            x_d = x.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
            x = torch.addcmul(x, x - x_d, self.sigma.scale)  # x + sigma * (x - x_d)
        return self.act_value(x)

    def forward_gating(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # the reference's force-fp32 path: note the second activation (see module docstring)
        with torch.autocast(device_type=g.device.type, enabled=False):
            gv = self.act_gate(g.float()) * self.act_gate(v.float())
            bias = self.proj_2.bias
            return F.conv2d(gv, self.proj_2.weight.float(), None if bias is None else bias.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.feat_decompose(x)
        v = self.value(x)
        if not self.gating:
            return self.proj_2(self.act_gate(v)) + shortcut
        assert self.gate is not None  # (gating on)
        g = self.gate(x)
        if self.attn_force_fp32:
            x = self.forward_gating(self.act_gate(g), self.act_gate(v))
        else:
            x = self.proj_2(self.act_gate(g) * self.act_gate(v))
        return x + shortcut


class MogaBlock(nn.Module):
    """One MogaNet block: [B, C, H, W] -> [B, C, H, W].

    ``x + ls1 * Moga(BN(x))`` then ``x + ls2 * CAFFN(BN(x))``, each residual branch with drop path.
    """

    def __init__(
            self,
            embed_dims: int,
            ffn_ratio: float = 4.,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            act_layer: Callable[[], nn.Module] = nn.GELU,
            init_value: float = 1e-5,
            attn_dw_dilation: Sequence[int] = (1, 2, 3),
            attn_channel_split: Sequence[int] = (1, 3, 4),
            attn_act_type: str = 'silu',
            attn_force_fp32: bool = False,
            gating: bool = True,
            feat_decompose: bool = True,
            channel_aggregation: bool = True,
    ):
        super().__init__()
        self.out_channels = embed_dims
        self.norm1 = nn.BatchNorm2d(embed_dims, eps=1e-5)
        self.attn = MultiOrderGatedAggregation(
            embed_dims,
            attn_dw_dilation=attn_dw_dilation,
            attn_channel_split=attn_channel_split,
            attn_act_type=attn_act_type,
            attn_force_fp32=attn_force_fp32,
            gating=gating,
            feat_decompose=feat_decompose,
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.norm2 = nn.BatchNorm2d(embed_dims, eps=1e-5)
        self.mlp = ChannelAggregationFFN(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * ffn_ratio),
            act_layer=act_layer,
            ffn_drop=drop_rate,
            channel_aggregation=channel_aggregation,
        )
        self.layer_scale_1 = nn.Parameter(init_value * torch.ones((1, embed_dims, 1, 1)))
        self.layer_scale_2 = nn.Parameter(init_value * torch.ones((1, embed_dims, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1 * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))
        return x


class ConvPatchEmbed(nn.Module):
    """Down-sampling between stages: 3x3 conv (stride 2) + BN. [B, Cin, H, W] -> [B, C, H/2, W/2]."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(embed_dims, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(x))


class StackConvPatchEmbed(nn.Module):
    """Stem: two 3x3 conv + BN (GELU between). [B, Cin, H, W] -> [B, C, H/s, W/s], s = ``stride``.

    ``stride`` 4 is the reference (both convs stride 2); 2 makes the second conv stride 1; 1 is the
    authors' CIFAR variant (both stride 1). Parameters and their names do not depend on the stride.
    """

    def __init__(
            self,
            in_channels: int,
            embed_dims: int,
            kernel_size: int = 3,
            stride: int = 4,
            act_layer: Callable[[], nn.Module] = nn.GELU,
    ):
        super().__init__()
        s1, s2 = {4: (2, 2), 2: (2, 1), 1: (1, 1)}[stride]
        self.projection = nn.Sequential(
            nn.Conv2d(in_channels, embed_dims // 2, kernel_size=kernel_size, stride=s1, padding=kernel_size // 2),
            nn.BatchNorm2d(embed_dims // 2, eps=1e-5),
            act_layer(),
            nn.Conv2d(embed_dims // 2, embed_dims, kernel_size=kernel_size, stride=s2, padding=kernel_size // 2),
            nn.BatchNorm2d(embed_dims, eps=1e-5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)
