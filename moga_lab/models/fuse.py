"""Inference fusion for MogaNet: the same function with fewer passes over memory.

``fuse_for_inference(model)`` returns an eval-only copy in which everything linear that sits next to a
linear layer is folded into it (exact up to float rounding; tested to 1e-4 against the unfused model and
the reference fixture):

* stem / down-sampling: BatchNorm folded into the preceding convolution;
* spatial block: ``norm1`` folded into ``proj_1``; feature decomposition ``y + sigma (y - GAP(y))`` becomes
  ``conv(x, (1 + sigma) A) - (sigma A) GAP(x)`` (a 1x1 conv plus a per-image bias: GAP commutes with the
  affine ``A``); ``layer_scale_1`` folded into ``proj_2``; the block's identity path through the normalised
  shortcut becomes one ``x * s + proj_2(...)`` (addcmul);
* channel block: ``norm2`` folded into ``fc1``; channel aggregation ``h + sigma (h - act(decompose(h)))``
  followed by ``fc2`` becomes ``fc2'(h) - u * act(decompose(h))`` with ``u = ls2 W2 sigma`` (a rank-one term:
  three passes over the 8C-wide hidden tensor replaced by one over the C-wide output); ``layer_scale_2``
  folded into ``fc2``.

The fused model runs channels_last; it cannot be trained (BatchNorm statistics are baked in).
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .moganet import ChannelAggregationFFN, MogaBlock, MogaNet, MultiOrderGatedAggregation, same_dwconv

__all__ = ['fuse_for_inference', 'FusedMogaBlock']


def _bn_affine(bn: nn.BatchNorm2d):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale, shift = _bn_affine(bn)
    fused = copy.deepcopy(conv)
    fused.weight.data = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused


def _w(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.flatten(1)  # [out, in] for a 1x1 conv


class FusedMogaBlock(nn.Module):
    """Eval-only MogaBlock with its linear parts folded (see the module docstring). [B, C, H, W] -> same."""

    def __init__(self, block: MogaBlock):
        super().__init__()
        attn: MultiOrderGatedAggregation = block.attn
        mlp: ChannelAggregationFFN = block.mlp
        C = attn.embed_dims
        with torch.no_grad():
            # ---- spatial block -----------------------------------------------------------------
            a1, b1 = _bn_affine(block.norm1)
            A = _w(attn.proj_1) * a1.view(1, -1)                     # proj_1(BN(x)) = A x + beta
            beta = _w(attn.proj_1) @ b1 + attn.proj_1.bias
            self.use_fd = attn.use_feat_decompose
            if self.use_fd:
                sigma = attn.sigma.scale.view(-1, 1)
                self.register_buffer('w_in', ((1 + sigma) * A).view(C, C, 1, 1).clone())
                self.register_buffer('w_mean', (sigma * A).clone())  # [C, C], applied to GAP(x)
            else:
                self.register_buffer('w_in', A.view(C, C, 1, 1).clone())
            self.register_buffer('b_in', beta.clone())
            self.act_value = attn.act_value
            self.act_gate = attn.act_gate
            self.gate = copy.deepcopy(attn.gate)
            self.value = copy.deepcopy(attn.value)
            self.gating = attn.gating
            self.force_fp32 = attn.attn_force_fp32
            ls1 = block.layer_scale_1.view(-1)
            self.register_buffer('w_out', (_w(attn.proj_2) * ls1.view(-1, 1)).view(C, C, 1, 1).clone())
            # x + ls1 * (proj_2(z) + BN(x)) = x * (1 + ls1 a1) + [ls1 (b_p2 + b1)] + (ls1 W_p2) z
            self.register_buffer('b_out', (ls1 * (attn.proj_2.bias + b1)).clone())
            self.register_buffer('s_res', (1 + ls1 * a1).view(1, C, 1, 1).clone())
            # ---- channel block -----------------------------------------------------------------
            a2, b2 = _bn_affine(block.norm2)
            self.register_buffer('w_fc1', (mlp.fc1.weight * a2.view(1, -1, 1, 1)).clone())
            self.register_buffer('b_fc1', (_w(mlp.fc1) @ b2 + mlp.fc1.bias).clone())
            self.dwconv = copy.deepcopy(mlp.dwconv)
            self.act = mlp.act
            ls2 = block.layer_scale_2.view(-1, 1)
            W2 = _w(mlp.fc2) * ls2                                    # [C, Ch]
            self.use_ca = mlp.channel_aggregation
            if self.use_ca:
                sig = mlp.sigma.scale.view(1, -1)                     # [1, Ch]
                self.decompose = copy.deepcopy(mlp.decompose)
                self.decompose_act = mlp.decompose_act
                self.register_buffer('w_fc2', (W2 * (1 + sig)).view(C, -1, 1, 1).clone())
                self.register_buffer('u', (W2 @ sig.view(-1)).view(1, C, 1, 1).clone())
            else:
                self.register_buffer('w_fc2', W2.view(C, -1, 1, 1).clone())
            self.register_buffer('b_fc2', (ls2.view(-1) * mlp.fc2.bias).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.w_in, self.b_in)
        if self.use_fd:
            y = y - F.linear(x.mean((2, 3)), self.w_mean).unsqueeze(-1).unsqueeze(-1)
        y = self.act_value(y)
        v = self.act_gate(self.value(y))
        if self.gating:
            g = self.act_gate(self.gate(y))
            if self.force_fp32:  # the reference's flag: the activation is applied a second time
                with torch.autocast(device_type=x.device.type, enabled=False):
                    z = self.act_gate(g.float()) * self.act_gate(v.float())
            else:
                z = g * v
        else:
            z = v
        x = torch.addcmul(F.conv2d(z.to(self.w_out.dtype) if self.force_fp32 else z, self.w_out, self.b_out),
                          x, self.s_res)
        h = self.act(same_dwconv(self.dwconv, F.conv2d(x, self.w_fc1, self.b_fc1)))
        out = F.conv2d(h, self.w_fc2, self.b_fc2)
        if self.use_ca:
            out = out - self.u * self.decompose_act(self.decompose(h))
        return x + out


class _EvalOnly:
    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError('a fused MogaNet is for inference only (BatchNorm statistics are folded into its '
                               'convolutions); train the unfused model')
        return super().train(False)


def fuse_for_inference(model: MogaNet, channels_last: bool = True) -> MogaNet:
    """An eval-only copy of ``model`` computing the same function with the folds described above."""
    if not isinstance(model, MogaNet):
        raise TypeError(f'fuse_for_inference takes a MogaNet; got {type(model).__name__}')
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        stem = fused.patch_embed1.projection
        stem[0] = _fold_bn_after_conv(stem[0], stem[1])
        stem[1] = nn.Identity()
        stem[3] = _fold_bn_after_conv(stem[3], stem[4])
        stem[4] = nn.Identity()
        for i in range(2, fused.num_stages + 1):
            pe = getattr(fused, f'patch_embed{i}')
            pe.projection = _fold_bn_after_conv(pe.projection, pe.norm)
            pe.norm = nn.Identity()
        for i in range(1, fused.num_stages + 1):
            blocks = getattr(fused, f'blocks{i}')
            for j, block in enumerate(blocks):
                blocks[j] = FusedMogaBlock(block)
    fused.__class__ = type('FusedMogaNet', (_EvalOnly, type(model)), {})
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    return fused
