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
  three passes over the 8C-wide hidden tensor replaced by one over the C-wide output), and ``decompose``
  itself becomes one more output row of ``fc2`` (the hidden tensor is read by one conv, not two: T 1.05x fp32,
  S 1.03x); ``layer_scale_2`` folded into ``fc2``.

On CPU without autograd (float32, or bfloat16 under autocast) the fused block also hands activations and
residual additions to oneDNN as post-ops of the convolution before them
(``torch.ops.mkldnn._convolution_pointwise``): the depth-wise conv of the FFN with its GELU, the gate and value
point-wise convs with their SiLU, ``proj_2`` (and ``fc2`` without CA) with the residual sum (float32 only: under
autocast the residual stream stays float32). Each post-op saves one write and one read of the tensor; over the 8C-wide FFN tensors
that is most of the memory traffic left. Eager PyTorch has no other way to fuse them (inductor does it under
``torch.compile``, 1.05-1.2x faster than this eager path on a 2-core AMD EPYC, after ~1 min of compiling per
shape: benchmarks/throughput.py). Elsewhere (GPU, float16, compile, gradients enabled) the plain ops run;
``onednn_post_ops(False)`` forces them.

The post-op op is private to torch (what inductor lowers to): before the first use in a dtype it is checked on a small
convolution against the plain ops (`onednn_post_ops_supported`); a torch without it, or where it fails or differs,
runs the plain ops.

Under CPU autocast each convolution and linear weight is cast to bfloat16 once and the copy reused while the weight
is unchanged (`moga_lab.models.casts.CastCache`, one per module): autocast itself casts them again on every call
(~500 casts per MogaNet-XT forward). Same logits bit for bit; measured side by side at batch 1 bf16 on the 2-core
Xeon, XT 24.8 -> 27.2 and T 21.5 -> 24.5 images/s.

The network around the blocks is `moga_lab.models.FusedMogaNet` (built by ``MogaNet.for_inference()``); the stems and
down-sampling layers fold their BatchNorms with ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (`fold_patch_embed`).
The blocks' folds are written here: PyTorch folds a BatchNorm only into the convolution *before* it, and these sit
after it, next to layer scales, FD and CA. The fused model runs channels_last; it cannot be trained (BatchNorm
statistics are baked in).
"""
import contextlib
import copy
import warnings
from typing import Dict, Optional, Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from moga_lab.models.casts import CastCache, with_cast_cache
from moga_lab.models.layers import (ChannelAggregationFFN, ConvPatchEmbed, MogaBlock, MultiOrderDWConv,
                                    MultiOrderGatedAggregation, StackConvPatchEmbed, same_dwconv_args)

__all__ = ['FusedMogaBlock', 'fold_patch_embed', 'fuse_for_inference', 'onednn_bf16', 'onednn_post_ops',
           'onednn_post_ops_supported']


def _bn_affine(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    weight, bias, mean, var = bn.weight, bn.bias, bn.running_mean, bn.running_var
    assert weight is not None and bias is not None and mean is not None and var is not None  # affine, with statistics
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _b(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None  # (every convolution of a MogaBlock has one)
    return conv.bias


def _w(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.flatten(1)  # [out, in] for a 1x1 conv


def _onednn_act(act: nn.Module):
    """oneDNN's post-op name and algorithm for an activation module, or None when it has none."""
    if isinstance(act, nn.GELU):
        return 'gelu', act.approximate  # 'none' (erf) or 'tanh'
    return {nn.SiLU: ('swish', None), nn.Sigmoid: ('sigmoid', None), nn.Identity: ('none', None)}.get(type(act))


_POST_OPS = {'enabled': True}


@contextlib.contextmanager
def onednn_post_ops(enabled: bool):
    """Turn the oneDNN post-op path of fused blocks on or off inside the ``with`` (a process-wide switch for
    benchmarks and debugging, like ``torch.backends`` flags; both paths compute the same function).

    Args:
        enabled: False runs the plain ops even where the post-op path is supported.
    """
    before = _POST_OPS['enabled']
    _POST_OPS['enabled'] = bool(enabled)
    try:
        yield
    finally:
        _POST_OPS['enabled'] = before


_BF16: Dict[str, bool] = {}  # asked once: whether oneDNN computes bfloat16 convolutions on this CPU


# what a CPU needs for bfloat16 to run natively (the one wording every warning and benchmark note uses)
NATIVE_BF16 = 'native bfloat16 (oneDNN needs AVX-512 BW/VL/DQ, AVX-NE-CONVERT or AMX)'


def onednn_bf16() -> bool:
    """Whether oneDNN has bfloat16 convolutions on this CPU: they need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT. On a
    CPU without them (e.g. an AVX2-only AMD EPYC) the post-op path's bfloat16 primitives raise, so under bfloat16
    autocast the fused blocks take the plain ops there, which PyTorch computes with its own (slower) kernels."""
    if 'ok' not in _BF16:
        try:  # a private query: a torch without it counts as no
            _BF16['ok'] = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            _BF16['ok'] = False
    return _BF16['ok']


def _pointwise_op():
    """torch's fused convolution + post-op (``torch.ops.mkldnn._convolution_pointwise``, what inductor lowers to on
    CPU), or None where this torch has none. It is private: a release may rename it, change its arguments or drop it,
    which is why `onednn_post_ops_supported` checks what it computes before the fused blocks use it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_SUPPORTED: Dict[torch.dtype, bool] = {}  # dtype -> the probe's answer, asked once per process


def onednn_post_ops_supported(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the oneDNN post-op path works here in ``dtype``: the private op exists (`_pointwise_op`) and, on a
    small convolution, computes what the plain ops compute for every activation the fused blocks hand it and for the
    residual sum (float32). Asked once per process and dtype; where the answer is no, the fused blocks run the plain
    ops (the same function, slower), with a warning when the op exists but fails or differs.

    Args:
        dtype: float32, or bfloat16 (under CPU autocast; also needs `onednn_bf16`).
    """
    if dtype not in _SUPPORTED:
        _SUPPORTED[dtype] = _probe(dtype)
    return _SUPPORTED[dtype]


def _probe(dtype: torch.dtype) -> bool:
    op = _pointwise_op()
    if op is None or dtype not in (torch.float32, torch.bfloat16) or (dtype == torch.bfloat16 and not onednn_bf16()):
        return False
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
    w, b, other = torch.randn(8, 8, 3, 3, generator=g) / 5, torch.randn(8, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    acts = {('gelu', 'none'): lambda t: F.gelu(t), ('gelu', 'tanh'): lambda t: F.gelu(t, approximate='tanh'),
            ('swish', None): F.silu, ('sigmoid', None): torch.sigmoid, ('none', None): lambda t: t}
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    try:
        with torch.no_grad():
            xd, wd, bd = x.to(dtype), w.to(dtype), b.to(dtype)
            plain = F.conv2d(xd.float(), wd.float(), bd.float(), padding=1)
            for (name, algorithm), act in acts.items():
                got = op(xd, wd, bd, [1, 1], [1, 1], [1, 1], 1, name, [], algorithm)
                if got.shape != plain.shape or (got.float() - act(plain)).abs().max() > tol * (1 + plain.abs().max()):
                    raise RuntimeError(f'{name} differs from the plain ops')
            if dtype == torch.float32:
                w1 = w[:, :, 1:2, 1:2].contiguous()
                got = op.binary(x, other, w1, b, [0, 0], [1, 1], [1, 1], 1, 'add', 1.0, None, [], None)
                if (got - (other + F.conv2d(x, w1, b))).abs().max() > tol * 10:
                    raise RuntimeError('the residual sum differs from the plain ops')
    except Exception as error:  # a private op: whatever it raises means "not here"
        warnings.warn(f'the fused MogaNet runs without oneDNN post-ops in {dtype} (same function, slower): '
                      f'torch.ops.mkldnn._convolution_pointwise failed its check on torch {torch.__version__}: '
                      f'{type(error).__name__}: {error}', RuntimeWarning, stacklevel=3)
        return False
    return True


def _onednn_dtype(x: torch.Tensor):
    """The dtype the oneDNN post-op path computes in for ``x`` here (float32, or bfloat16 under CPU autocast), or
    None where it does not apply: GPU, float16, torch.compile / TorchScript, PyTorch without oneDNN or whose private
    op fails `onednn_post_ops_supported`, bfloat16 on a CPU without oneDNN's bfloat16 (`onednn_bf16`), and with
    gradients enabled (the fused ops have no backward; Grad-CAM through a fused model takes the plain ops)."""
    # is_compiling() first: dynamo cannot trace mkldnn.is_available() and would break the graph at every block
    if torch.compiler.is_compiling() or torch.jit.is_scripting():
        return None
    if not _POST_OPS['enabled'] or x.device.type != 'cpu' or torch.is_grad_enabled():
        return None
    if torch.is_autocast_enabled('cpu'):
        if torch.get_autocast_dtype('cpu') != torch.bfloat16 or not onednn_bf16():
            return None
        dtype = torch.bfloat16
    elif x.dtype == torch.float32:
        dtype = torch.float32
    else:
        return None
    return dtype if onednn_post_ops_supported(dtype) else None


def fold_patch_embed(embed: nn.Module) -> nn.Module:
    """A copy of a stem or down-sampling layer with each BatchNorm folded into the convolution before it
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and left as nn.Identity, its convolutions cast-caching.

    Args:
        embed: a `StackConvPatchEmbed` (conv, BN, GELU, conv, BN) or a `ConvPatchEmbed` (conv, BN), in eval mode.
    """
    folded = copy.deepcopy(embed).eval()  # (fuse_conv_bn_eval folds eval-mode layers: the running statistics)
    conv_bn = lambda conv, bn: with_cast_cache(fuse_conv_bn_eval(cast(nn.Conv2d, conv), cast(nn.BatchNorm2d, bn)))  # noqa: E731
    if isinstance(embed, StackConvPatchEmbed):
        p = cast(nn.Sequential, folded.projection)
        p[0], p[1] = conv_bn(p[0], p[1]), nn.Identity()
        p[3], p[4] = conv_bn(p[3], p[4]), nn.Identity()
    elif isinstance(embed, ConvPatchEmbed):
        folded.projection = conv_bn(folded.projection, folded.norm)
        folded.norm = nn.Identity()
    else:
        raise TypeError(f'fold_patch_embed takes a StackConvPatchEmbed or ConvPatchEmbed; got {type(embed).__name__}')
    return folded


def _conv_act(x, weight, bias, act, dtype, casts: CastCache, padding=(0, 0), dilation=(1, 1), groups=1):
    """act(conv2d(x)) (stride 1) in one oneDNN primitive, computed in ``dtype`` (the activation is applied to the
    float32 accumulator before any rounding to bfloat16)."""
    return _pointwise_op()(
        x.to(dtype).contiguous(memory_format=torch.channels_last), casts(weight, dtype), casts(bias, dtype),
        list(padding), [1, 1], list(dilation), groups, act[0], [], act[1])


def _conv_add(x, other, weight, bias, dtype, casts: CastCache):
    """other + conv2d(x) (1x1); one oneDNN primitive in float32. Under bfloat16 autocast the residual stream stays
    float32 (as in the plain path), which the fused sum cannot mix with a bfloat16 convolution."""
    if dtype != torch.float32:
        return other + F.conv2d(x, casts.lowp(weight), casts.lowp(bias))
    return _pointwise_op().binary(x, other, weight, bias, [0, 0], [1, 1], [1, 1], 1, 'add', 1.0, None, [], None)


class FusedMogaBlock(nn.Module):
    """Eval-only MogaBlock with its linear parts folded (see the module docstring). [B, C, H, W] -> same."""
    # the folded weights (buffers) and the parts kept as they are
    w_in: torch.Tensor
    w_mean: torch.Tensor
    b_in: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor
    s_res: torch.Tensor
    w_fc1: torch.Tensor
    b_fc1: torch.Tensor
    w_fc2: torch.Tensor
    b_fc2: torch.Tensor
    u: torch.Tensor
    gate: Optional[nn.Conv2d]
    value: MultiOrderDWConv
    dwconv: nn.Conv2d

    def __init__(self, block: MogaBlock):
        super().__init__()
        attn: MultiOrderGatedAggregation = block.attn
        mlp: ChannelAggregationFFN = block.mlp
        C = attn.embed_dims
        with torch.no_grad():
            # ---- spatial block -----------------------------------------------------------------
            a1, b1 = _bn_affine(block.norm1)
            A = _w(attn.proj_1) * a1.view(1, -1)                     # proj_1(BN(x)) = A x + beta
            beta = _w(attn.proj_1) @ b1 + _b(attn.proj_1)
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
            self.gate = None if attn.gate is None else cast(nn.Conv2d, with_cast_cache(attn.gate))
            self.value = cast(MultiOrderDWConv, with_cast_cache(attn.value))
            self.gating = attn.gating
            self.force_fp32 = attn.attn_force_fp32
            ls1 = block.layer_scale_1.view(-1)
            self.register_buffer('w_out', (_w(attn.proj_2) * ls1.view(-1, 1)).view(C, C, 1, 1).clone())
            # x + ls1 * (proj_2(z) + BN(x)) = x * (1 + ls1 a1) + [ls1 (b_p2 + b1)] + (ls1 W_p2) z
            self.register_buffer('b_out', (ls1 * (_b(attn.proj_2) + b1)).clone())
            self.register_buffer('s_res', (1 + ls1 * a1).view(1, C, 1, 1).clone())
            # ---- channel block -----------------------------------------------------------------
            a2, b2 = _bn_affine(block.norm2)
            self.register_buffer('w_fc1', (mlp.fc1.weight * a2.view(1, -1, 1, 1)).clone())
            self.register_buffer('b_fc1', (_w(mlp.fc1) @ b2 + _b(mlp.fc1)).clone())
            self.dwconv = cast(nn.Conv2d, with_cast_cache(mlp.dwconv))
            self.act = mlp.act
            ls2 = block.layer_scale_2.view(-1, 1)
            W2 = _w(mlp.fc2) * ls2                                    # [C, Ch]
            b_fc2 = ls2.view(-1) * _b(mlp.fc2)
            self.use_ca = mlp.channel_aggregation
            if self.use_ca:
                sig = mlp.sigma.scale.view(1, -1)                     # [1, Ch]
                self.decompose_act = mlp.decompose_act
                # decompose (Ch -> 1) is one more output row of fc2: [C + 1, Ch], so the 8C-wide hidden tensor is
                # read once (by one conv) instead of twice
                self.register_buffer('w_fc2', torch.cat([(W2 * (1 + sig)).view(C, -1, 1, 1), mlp.decompose.weight]))
                self.register_buffer('b_fc2', torch.cat([b_fc2, _b(mlp.decompose)]))
                self.register_buffer('u', (W2 @ sig.view(-1)).view(1, C, 1, 1).clone())
            else:
                self.register_buffer('w_fc2', W2.view(C, -1, 1, 1).clone())
                self.register_buffer('b_fc2', b_fc2.clone())
        self.casts = CastCache()  # this block's folded weights, cast once under autocast
        self.gate_post_op = _onednn_act(self.act_gate)
        self.ffn_post_op = _onednn_act(self.act)
        self.onednn = self.gate_post_op is not None and self.ffn_post_op is not None and not self.force_fp32

    def value_input(self, x: torch.Tensor) -> torch.Tensor:
        """act_value(FD(proj_1(BN(x)))), folded: one 1x1 conv minus a per-image bias from GAP(x)."""
        lowp = self.casts.lowp
        y = F.conv2d(x, lowp(self.w_in), lowp(self.b_in))
        if self.use_fd:
            y = y - F.linear(x.mean((2, 3)), lowp(self.w_mean)).unsqueeze(-1).unsqueeze(-1)
        return self.act_value(y)

    def _dwconv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """`moga_lab.models.layers.same_dwconv` with the weight and bias cast once under autocast."""
        x, weight, padding = same_dwconv_args(conv, x)
        lowp = self.casts.lowp
        if weight is conv.weight:  # (a cropped kernel is a new view every call: nothing to keep)
            weight = lowp(weight)
        return F.conv2d(x, weight, lowp(conv.bias), 1, padding, conv.dilation, conv.groups)

    def ca_residual(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x + fc2'(h) - u * act(decompose(h)) from ``t`` = [fc2'(h), decompose(h)]: [B, C + 1, H, W]."""
        C = x.shape[1]
        # the decompose row is one channel of a channels_last tensor (stride C + 1): ATen's GELU on that strided view
        # takes its scalar path, 4.5x slower than copying it out first ([16, 1, 56, 56]: 446 vs 98 us)
        return torch.addcmul(x + t[:, :C], self.u, self.decompose_act(t[:, C:].contiguous()), value=-1)

    def forward_onednn(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`forward` with activations and residual sums as oneDNN post-ops (CPU; ``dtype`` float32 or the
        bfloat16 of autocast)."""
        casts = self.casts
        y = self.value_input(x)
        pw = self.value.PW_conv
        z = _conv_act(self.value.multi_order(y, self._dwconv), pw.weight, pw.bias, self.gate_post_op, dtype, casts)
        if self.gate is not None:
            z = z * _conv_act(y, self.gate.weight, self.gate.bias, self.gate_post_op, dtype, casts)
        x = _conv_add(z, x * self.s_res, self.w_out, self.b_out, dtype, casts)
        h = F.conv2d(x, casts.lowp(self.w_fc1), casts.lowp(self.b_fc1))
        h, weight, padding = same_dwconv_args(self.dwconv, h)
        h = _conv_act(h, weight, self.dwconv.bias, self.ffn_post_op, dtype, casts, padding, self.dwconv.dilation,
                      self.dwconv.groups)
        if self.use_ca:
            return self.ca_residual(x, F.conv2d(h, casts.lowp(self.w_fc2), casts.lowp(self.b_fc2)))
        return _conv_add(h, x, self.w_fc2, self.b_fc2, dtype, casts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _onednn_dtype(x) if self.onednn else None
        if dtype is not None:
            return self.forward_onednn(x, dtype)
        y = self.value_input(x)
        v = self.act_gate(self.value.PW_conv(self.value.multi_order(y, self._dwconv)))
        if self.gate is not None:
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
        h = self.act(self._dwconv(self.dwconv, F.conv2d(x, self.w_fc1, self.b_fc1)))
        out = F.conv2d(h, self.w_fc2, self.b_fc2)
        return self.ca_residual(x, out) if self.use_ca else x + out


def fuse_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """``model.for_inference(channels_last)``: the `moga_lab.models.FusedMogaNet` of a MogaNet.

    Args:
        model: a `moga_lab.models.MogaNet`.
        channels_last: store the fused model's weights channels_last (the layout its convolutions run fastest in).
    """
    for_inference = getattr(model, 'for_inference', None)
    if not callable(for_inference) or not any(isinstance(m, MogaBlock) for m in model.modules()):
        raise TypeError(f'fuse_for_inference takes a MogaNet; got {type(model).__name__}')
    return cast(nn.Module, for_inference(channels_last=channels_last))
