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

Under CPU autocast each convolution and linear weight is cast to bfloat16 once and the copy reused while the weight
is unchanged (`_cast`): autocast itself casts them again on every call (~500 casts per MogaNet-XT forward). Same
logits bit for bit; measured side by side at batch 1 bf16 on the 2-core Xeon, XT 24.8 -> 27.2 and T 21.5 -> 24.5
images/s.

The fused model runs channels_last; it cannot be trained (BatchNorm statistics are baked in).
"""
import contextlib
import copy
import weakref
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from moga_lab.models.layers import ChannelAggregationFFN, MogaBlock, MultiOrderGatedAggregation, same_dwconv, same_dwconv_args

__all__ = ['fuse_for_inference', 'FusedMogaBlock', 'onednn_post_ops', 'onednn_bf16']


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


def _onednn_act(act: nn.Module):
    """oneDNN's post-op name and algorithm for an activation module, or None when it has none."""
    if isinstance(act, nn.GELU):
        return 'gelu', act.approximate  # 'none' (erf) or 'tanh'
    return {nn.SiLU: ('swish', None), nn.Sigmoid: ('sigmoid', None), nn.Identity: ('none', None)}.get(type(act))


_POST_OPS = {'enabled': True}


@contextlib.contextmanager
def onednn_post_ops(enabled: bool):
    """Turn the oneDNN post-op path of fused blocks on or off inside the ``with`` (for benchmarks and debugging;
    both paths compute the same function)."""
    before = _POST_OPS['enabled']
    _POST_OPS['enabled'] = bool(enabled)
    try:
        yield
    finally:
        _POST_OPS['enabled'] = before


_BF16 = {}  # asked once: whether oneDNN computes bfloat16 convolutions on this CPU


# what a CPU needs for bfloat16 to run natively (the one wording every warning and benchmark note uses)
NATIVE_BF16 = 'native bfloat16 (oneDNN needs AVX-512 BW/VL/DQ, AVX-NE-CONVERT or AMX)'


def onednn_bf16() -> bool:
    """Whether oneDNN has bfloat16 convolutions on this CPU: they need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT. On a
    CPU without them (e.g. an AVX2-only AMD EPYC) the post-op path's bfloat16 primitives raise, so under bfloat16
    autocast the fused blocks take the plain ops there, which PyTorch computes with its own (slower) kernels."""
    if 'ok' not in _BF16:
        _BF16['ok'] = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return _BF16['ok']


def _onednn_dtype(x: torch.Tensor):
    """The dtype the oneDNN post-op path computes in for ``x`` here (float32, or bfloat16 under CPU autocast), or
    None where it does not apply: GPU, float16, torch.compile / TorchScript, PyTorch without oneDNN, bfloat16 on a
    CPU without oneDNN's bfloat16 (`onednn_bf16`), and with gradients enabled (the fused ops have no backward;
    Grad-CAM through a fused model takes the plain ops)."""
    # is_compiling() first: dynamo cannot trace mkldnn.is_available() and would break the graph at every block
    if torch.compiler.is_compiling() or torch.jit.is_scripting():
        return None
    if (not _POST_OPS['enabled'] or x.device.type != 'cpu' or torch.is_grad_enabled()
            or not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, '_convolution_pointwise')):
        return None
    if torch.is_autocast_enabled('cpu'):
        bf16 = torch.get_autocast_dtype('cpu') == torch.bfloat16
        return torch.bfloat16 if bf16 and onednn_bf16() else None
    return torch.float32 if x.dtype == torch.float32 else None


_CASTS = {}  # id(weight) -> (weak reference to it, its version, dtype, data address, storage, its copy in dtype)


def _cast(t: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """``t.to(dtype)``, made once per weight and reused while the weight is unchanged (its version counter).

    Under CPU autocast every convolution casts its float32 weight and bias to bfloat16 again on every call (~500
    casts per MogaNet-XT forward, 15 % of its time at batch 1: the folded weights are buffers, which autocast never
    caches). The copy is the same cast, so the outputs are bit-identical. Not used with gradients enabled (the copy
    would cut the weight out of the graph) nor for inference-mode tensors (no version counter to tell an in-place
    change)."""
    if t is None or t.dtype == dtype:
        return t
    if torch.is_grad_enabled() or t.is_inference() or torch.compiler.is_compiling():
        return t.to(dtype)
    key = id(t)
    hit = _CASTS.get(key)
    # valid while it is the same tensor (a weak reference: ids are reused), neither changed in place (version) nor
    # given new data (``.data =``, ``.to()``: the entry holds the old storage, so no other can take its address)
    if hit is not None and hit[0]() is t and hit[1:4] == (t._version, dtype, t.data_ptr()):
        return hit[5]
    copy_ = t.to(dtype)
    _CASTS[key] = (weakref.ref(t, lambda _, k=key: _CASTS.pop(k, None)), t._version, dtype, t.data_ptr(),
                   t.untyped_storage(), copy_)
    return copy_


def _lowp(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A weight as CPU autocast would cast it for a convolution or linear layer here (cached, see `_cast`); the
    weight itself outside autocast."""
    if t is not None and t.dtype == torch.float32 and torch.is_autocast_enabled('cpu'):
        return _cast(t, torch.get_autocast_dtype('cpu'))
    return t


def _same_dwconv_cast(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`same_dwconv` with the weight and bias cast once under autocast (`_lowp`)."""
    x, weight, padding = same_dwconv_args(conv, x)
    if weight is conv.weight:  # (a cropped kernel is a new view every call: nothing to keep)
        weight = _lowp(weight)
    return F.conv2d(x, weight, _lowp(conv.bias), 1, padding, conv.dilation, conv.groups)


class _CastCachedConv2d(nn.Conv2d):
    """nn.Conv2d whose weight and bias reach autocast already cast (`_lowp`): the fused model's stems."""
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _lowp(self.weight), _lowp(self.bias))


class _CastCachedLinear(nn.Linear):
    """nn.Linear whose weight and bias reach autocast already cast (`_lowp`): the fused model's head."""
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _lowp(self.weight), _lowp(self.bias))


def _conv_act(x, weight, bias, act, dtype, padding=(0, 0), dilation=(1, 1), groups=1):
    """act(conv2d(x)) (stride 1) in one oneDNN primitive, computed in ``dtype`` (the activation is applied to the
    float32 accumulator before any rounding to bfloat16)."""
    return torch.ops.mkldnn._convolution_pointwise(
        x.to(dtype).contiguous(memory_format=torch.channels_last), _cast(weight, dtype), _cast(bias, dtype),
        list(padding), [1, 1], list(dilation), groups, act[0], [], act[1])


def _conv_add(x, other, weight, bias, dtype):
    """other + conv2d(x) (1x1); one oneDNN primitive in float32. Under bfloat16 autocast the residual stream stays
    float32 (as in the plain path), which the fused sum cannot mix with a bfloat16 convolution."""
    if dtype != torch.float32:
        return other + F.conv2d(x, _lowp(weight), _lowp(bias))
    return torch.ops.mkldnn._convolution_pointwise.binary(x, other, weight, bias, [0, 0], [1, 1], [1, 1], 1, 'add',
                                                          1.0, None, [], None)


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
            b_fc2 = ls2.view(-1) * mlp.fc2.bias
            self.use_ca = mlp.channel_aggregation
            if self.use_ca:
                sig = mlp.sigma.scale.view(1, -1)                     # [1, Ch]
                self.decompose_act = mlp.decompose_act
                # decompose (Ch -> 1) is one more output row of fc2: [C + 1, Ch], so the 8C-wide hidden tensor is
                # read once (by one conv) instead of twice
                self.register_buffer('w_fc2', torch.cat([(W2 * (1 + sig)).view(C, -1, 1, 1), mlp.decompose.weight]))
                self.register_buffer('b_fc2', torch.cat([b_fc2, mlp.decompose.bias]))
                self.register_buffer('u', (W2 @ sig.view(-1)).view(1, C, 1, 1).clone())
            else:
                self.register_buffer('w_fc2', W2.view(C, -1, 1, 1).clone())
                self.register_buffer('b_fc2', b_fc2.clone())
        self.gate_post_op = _onednn_act(self.act_gate)
        self.ffn_post_op = _onednn_act(self.act)
        self.onednn = self.gate_post_op is not None and self.ffn_post_op is not None and not self.force_fp32

    def value_input(self, x: torch.Tensor) -> torch.Tensor:
        """act_value(FD(proj_1(BN(x)))), folded: one 1x1 conv minus a per-image bias from GAP(x)."""
        y = F.conv2d(x, _lowp(self.w_in), _lowp(self.b_in))
        if self.use_fd:
            y = y - F.linear(x.mean((2, 3)), _lowp(self.w_mean)).unsqueeze(-1).unsqueeze(-1)
        return self.act_value(y)

    def ca_residual(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x + fc2'(h) - u * act(decompose(h)) from ``t`` = [fc2'(h), decompose(h)]: [B, C + 1, H, W]."""
        C = x.shape[1]
        # the decompose row is one channel of a channels_last tensor (stride C + 1): ATen's GELU on that strided view
        # takes its scalar path, 4.5x slower than copying it out first ([16, 1, 56, 56]: 446 vs 98 us)
        return torch.addcmul(x + t[:, :C], self.u, self.decompose_act(t[:, C:].contiguous()), value=-1)

    def forward_onednn(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`forward` with activations and residual sums as oneDNN post-ops (CPU; ``dtype`` float32 or the
        bfloat16 of autocast)."""
        y = self.value_input(x)
        pw = self.value.PW_conv
        z = _conv_act(self.value.multi_order(y, _same_dwconv_cast), pw.weight, pw.bias, self.gate_post_op, dtype)
        if self.gating:
            z = z * _conv_act(y, self.gate.weight, self.gate.bias, self.gate_post_op, dtype)
        x = _conv_add(z, x * self.s_res, self.w_out, self.b_out, dtype)
        h = F.conv2d(x, _lowp(self.w_fc1), _lowp(self.b_fc1))
        h, weight, padding = same_dwconv_args(self.dwconv, h)
        h = _conv_act(h, weight, self.dwconv.bias, self.ffn_post_op, dtype, padding, self.dwconv.dilation,
                      self.dwconv.groups)
        if self.use_ca:
            return self.ca_residual(x, F.conv2d(h, _lowp(self.w_fc2), _lowp(self.b_fc2)))
        return _conv_add(h, x, self.w_fc2, self.b_fc2, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _onednn_dtype(x) if self.onednn else None
        if dtype is not None:
            return self.forward_onednn(x, dtype)
        y = self.value_input(x)
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
        return self.ca_residual(x, out) if self.use_ca else x + out


class _EvalOnly:
    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError('a fused MogaNet is for inference only (BatchNorm statistics are folded into its '
                               'convolutions); train the unfused model')
        return super().train(False)


def fuse_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-only copy of ``model`` (a `moga_lab.models.MogaNet`) computing the same function with the folds
    described above. The network is recognised by its parts (``num_stages`` stages of `MogaBlock`), so this file
    needs only the blocks and the network can call it without an import circle."""
    if not (hasattr(model, 'num_stages') and hasattr(model, 'patch_embed1')
            and any(isinstance(m, MogaBlock) for m in model.modules())):
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
        for module in fused.modules():  # stems, down-sampling and head: weights cast once under autocast
            if type(module) is nn.Conv2d:
                module.__class__ = _CastCachedConv2d
            elif type(module) is nn.Linear:
                module.__class__ = _CastCachedLinear
    fused.__class__ = type('FusedMogaNet', (_EvalOnly, type(model)), {})
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    return fused
