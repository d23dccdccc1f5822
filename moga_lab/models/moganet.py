""" MogaNet: Multi-order Gated Aggregation Network

Paper: `MogaNet: Multi-order Gated Aggregation Network` - https://arxiv.org/abs/2211.03295 (ICLR 2024)

A re-implementation that computes the same function as the authors' reference code and uses the same
parameter names, so the published checkpoints load with ``load_state_dict`` unchanged. Differences from
the reference are additions only:

* every component the paper ablates is a constructor option (gating branch and its activation,
  multi-order dilations and channel split, feature decomposition (FD), channel aggregation (CA));
* a small-image stem (``stem_stride`` 1 or 2 instead of 4) for 28-32 px inputs;
* timm's model contract (``forward_features`` returns the un-pooled map, ``forward_head``,
  ``forward_intermediates`` for ``features_only=True``, ``reset_classifier``).

``attn_force_fp32=True`` reproduces the reference exactly: that path applies the gating activation a
second time, ``proj_2(act(act(g)) * act(act(v)))``. The authors' XT/T checkpoints trained with the flag
depend on it. The reference only leaves *CUDA* autocast inside that region; here autocast is left on
whatever device the tensor lives, so under CPU bf16 autocast the gating product really is float32.
"""
import copy
import math
from typing import Any, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn as nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, register_model, generate_default_cfgs
from timm.models._features import feature_take_indices

from moga_lab.models.casts import with_cast_cache
from moga_lab.models.fuse import FusedMogaBlock, fold_patch_embed
from moga_lab.models.layers import GATE_ACTIVATIONS, STEM_STRIDES, ConvPatchEmbed, MogaBlock, StackConvPatchEmbed, make_activation

__all__ = ['MogaNet', 'FusedMogaNet', 'MOGANET_ARCHS', 'GATE_ACTIVATIONS', 'resolve_variant']


def _check_image_input(x: torch.Tensor, in_chans: int) -> None:
    """Clear error for a wrong input rank or channel count (a leaf for torch.fx, skipped when compiling)."""
    if torch.jit.is_scripting() or torch.compiler.is_compiling():
        return
    if x.ndim != 4:
        raise ValueError(f'MogaNet expects images of shape [B, {in_chans}, H, W]; got a tensor of shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(f'MogaNet was built for in_chans={in_chans}; the input has {x.shape[1]} channels '
                         f'(shape {tuple(x.shape)})')


torch.fx.wrap('_check_image_input')


MOGANET_ARCHS = {
    'xtiny': dict(embed_dims=(32, 64, 96, 192), depths=(3, 3, 10, 2), ffn_ratios=(8, 8, 4, 4)),
    'tiny': dict(embed_dims=(32, 64, 128, 256), depths=(3, 3, 12, 2), ffn_ratios=(8, 8, 4, 4)),
    'small': dict(embed_dims=(64, 128, 320, 512), depths=(2, 3, 12, 2), ffn_ratios=(8, 8, 4, 4)),
    'base': dict(embed_dims=(64, 160, 320, 512), depths=(4, 6, 22, 3), ffn_ratios=(8, 8, 4, 4)),
    'large': dict(embed_dims=(64, 160, 320, 640), depths=(4, 6, 44, 4), ffn_ratios=(8, 8, 4, 4)),
    'xlarge': dict(embed_dims=(96, 192, 480, 960), depths=(6, 6, 44, 4), ffn_ratios=(8, 8, 4, 4)),
}
VARIANT_ALIASES = {
    'xt': 'xtiny', 'x-tiny': 'xtiny', 't': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'xl': 'xlarge',
    'x-large': 'xlarge',
}


def resolve_variant(name: str) -> str:
    """The canonical variant name: 'xt' / 'moganet_xt' / 'XTiny' -> 'xtiny'.

    Args:
        name: a variant, alias or ``moganet_*`` model name.

    Returns:
        One of ``MOGANET_ARCHS``' keys.

    Raises:
        ValueError: naming the accepted variants.
    """
    key = str(name).lower()
    if key.startswith('moganet_'):
        key = key[len('moganet_'):]
    key = VARIANT_ALIASES.get(key, key)
    if key not in MOGANET_ARCHS:
        accepted = list(MOGANET_ARCHS) + sorted(VARIANT_ALIASES)
        raise ValueError(f'unknown MogaNet variant {name!r}; accepted: {", ".join(accepted)}')
    return key


def _check_triple(value, name: str, minimum: int) -> Tuple[int, int, int]:
    try:
        triple = tuple(int(v) for v in value)
        ok = len(triple) == 3 and all(int(v) == v for v in value) and min(triple) >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f'{name}={value!r} is not valid; accepted: three integers >= {minimum}, e.g. (1, 2, 3)')
    return triple[0], triple[1], triple[2]


class MogaNet(nn.Module):
    """MogaNet image classifier.

    Input [B, in_chans, H, W] -> logits [B, num_classes]. Four stages with down-sampling 4 (stem; see
    ``stem_stride``), 2, 2, 2; each stage ends with a BatchNorm (``norm1`` .. ``norm4``) whose output
    feeds the next stage. ``forward_features`` returns the ``norm4`` map [B, C4, H/32, W/32] (stem
    stride 4); ``forward_head`` averages it and applies ``head``.

    Args:
        arch: variant name ('xtiny', 'tiny', ... or an alias) or a dict with embed_dims, depths, ffn_ratios.
        in_chans: input channels.
        num_classes: classifier size; 0 gives a headless backbone (``forward`` returns pooled features).
        global_pool: 'avg' or '' (no pooling; ``forward_head`` then returns the map).
        drop_rate: dropout inside the FFNs (as the reference's ``drop_rate``).
        head_drop_rate: dropout before the classifier (timm's ``drop_rate`` meaning; reference: none).
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        init_value: initial layer scale.
        head_init_scale: factor applied to the initial classifier weights and bias.
        stem_stride: 4 (reference), 2 or 1 (small images; same parameters).
        gating: keep the gating branch (paper default True).
        gate_act: activation of the gating and value branches: 'silu' (default), 'sigmoid', 'gelu', 'identity'.
        dilations: dilations of the three multi-order DW convs, default (1, 2, 3).
        channel_split: relative channels of the three orders, default (1, 3, 4).
        feat_decompose: FD in the spatial block (default True).
        channel_aggregation: CA in the FFN (default True; False = plain DW-conv FFN).
        attn_force_fp32: the reference's flag (gating product in float32, activation applied twice).
        attn_final_dilation: False uses dilations (1, 2, 1) in the last stage, as the reference option.
        **kwargs: none are accepted (a TypeError names them); the parameter lets timm's builder pass its
            own keywords through.

    Example:
        ```python
        model = MogaNet('xtiny', in_chans=1, num_classes=10, stem_stride=2, gating=False)
        logits = model(torch.randn(8, 1, 28, 28))          # [8, 10]
        fast = model.eval().for_inference()               # fused copy, same outputs within 1e-4
        ```
    """

    def __init__(
            self,
            arch: Union[str, dict] = 'tiny',
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            head_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            init_value: float = 1e-5,
            head_init_scale: float = 1.,
            stem_stride: int = 4,
            gating: bool = True,
            gate_act: str = 'silu',
            dilations: Sequence[int] = (1, 2, 3),
            channel_split: Sequence[int] = (1, 3, 4),
            feat_decompose: bool = True,
            channel_aggregation: bool = True,
            attn_force_fp32: bool = False,
            attn_final_dilation: bool = True,
            **kwargs: Any,
    ):
        super().__init__()
        if kwargs:
            raise TypeError(f'MogaNet got unexpected arguments: {sorted(kwargs)}')
        if isinstance(arch, str):
            self.arch = resolve_variant(arch)
            settings = MOGANET_ARCHS[self.arch]
        else:
            needed = {'embed_dims', 'depths', 'ffn_ratios'}
            if not isinstance(arch, dict) or set(arch) != needed:
                raise ValueError(f'a custom arch must be a dict with exactly the keys {sorted(needed)}; got {arch!r}')
            self.arch, settings = 'custom', arch
        if stem_stride not in STEM_STRIDES:
            raise ValueError(f'stem_stride={stem_stride!r} is not supported; accepted: {STEM_STRIDES}')
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool={global_pool!r} is not supported; accepted: 'avg', ''")
        if int(in_chans) < 1:
            raise ValueError(f'in_chans={in_chans!r} must be a positive integer')
        make_activation(gate_act, 'gate_act')  # validate early
        dilations = _check_triple(dilations, 'dilations', 1)
        channel_split = _check_triple(channel_split, 'channel_split', 0)
        if sum(channel_split) == 0:
            raise ValueError(f'channel_split={channel_split!r} is not valid; accepted: three non-negative '
                             f'integers with a positive sum, e.g. (1, 3, 4)')
        self.embed_dims = list(settings['embed_dims'])
        self.depths = list(settings['depths'])
        self.ffn_ratios = list(settings['ffn_ratios'])
        self.num_stages = len(self.depths)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.head_drop_rate = head_drop_rate
        self.stem_stride = stem_stride
        self.attn_force_fp32 = attn_force_fp32
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.grad_checkpointing = False
        # the switches, kept for configs and reports
        self.ablation = dict(gating=gating, gate_act=str(gate_act).lower(), dilations=dilations,
                             channel_split=channel_split, feat_decompose=feat_decompose,
                             channel_aggregation=channel_aggregation)

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        cur = 0
        self.feature_info = []
        reduction = stem_stride
        for i, depth in enumerate(self.depths):
            patch_embed: nn.Module
            if i == 0:
                patch_embed = StackConvPatchEmbed(in_chans, self.embed_dims[0], stride=stem_stride)
            else:
                patch_embed = ConvPatchEmbed(self.embed_dims[i - 1], self.embed_dims[i])
                reduction *= 2
            stage_dilations = dilations
            if i == self.num_stages - 1 and not attn_final_dilation:
                stage_dilations = (1, 2, 1)
            blocks = nn.ModuleList([
                MogaBlock(
                    self.embed_dims[i],
                    ffn_ratio=self.ffn_ratios[i],
                    drop_rate=drop_rate,
                    drop_path_rate=dpr[cur + j],
                    init_value=init_value,
                    attn_dw_dilation=stage_dilations,
                    attn_channel_split=channel_split,
                    attn_act_type=gate_act,
                    attn_force_fp32=attn_force_fp32,
                    gating=gating,
                    feat_decompose=feat_decompose,
                    channel_aggregation=channel_aggregation,
                ) for j in range(depth)
            ])
            cur += depth
            self.add_module(f'patch_embed{i + 1}', patch_embed)
            self.add_module(f'blocks{i + 1}', blocks)
            self.add_module(f'norm{i + 1}', nn.BatchNorm2d(self.embed_dims[i], eps=1e-5))
            self.feature_info.append(dict(num_chs=self.embed_dims[i], reduction=reduction, module=f'norm{i + 1}'))

        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            self.head.weight.data.mul_(head_init_scale)
            self.head.bias.data.mul_(head_init_scale)

    @staticmethod
    def _init_weights(m: nn.Module):
        # the reference's init: trunc-normal classifier, fan-out normal convs, unit BN
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.data.zero_()

    # ---- timm contract ---------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        """Names of the parameters timm's optimizer factory keeps out of weight decay (the 4-D scales)."""
        # layer scales and element scales are 4-D [1, C, 1, 1], so timm's "ndim <= 1" rule misses them
        return {n for n, _ in self.named_parameters() if 'layer_scale' in n or n.endswith('sigma.scale')}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        """timm's parameter groups (stem, then stage / block) for layer-wise learning-rate decay."""
        return dict(
            stem=r'^patch_embed1',
            blocks=[(r'^patch_embed(\d+)', None), (r'^blocks(\d+)\.(\d+)', None), (r'^norm(\d+)', (99999,))]
            if not coarse else [(r'^(?:patch_embed|blocks|norm)(\d+)', None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        """Recompute each block in the backward pass instead of storing its activations (training memory)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classifier layer (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        """A new ``num_classes`` head (0 = none: ``forward`` returns pooled features); ``global_pool='avg'`` or
        ``''`` (no pooling: ``forward`` returns the [B, C4, h, w] map when the head is removed)."""
        if global_pool is not None:
            if global_pool not in ('avg', ''):
                raise ValueError(f"global_pool={global_pool!r} is not supported; accepted: 'avg', ''")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, f'patch_embed{i + 1}')(x)
        for block in getattr(self, f'blocks{i + 1}'):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return getattr(self, f'norm{i + 1}')(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_chans, H, W] -> [B, C4, H/(8*stem_stride), W/(8*stem_stride)] (after ``norm4``)."""
        _check_image_input(x, self.in_chans)
        for i in range(self.num_stages):
            x = self._stage(i, x)
        return x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ):
        """Stage outputs (after each stage's norm, as the reference's ``fork_feat`` mode).

        ``indices``: last n stages if int, all if None, else the listed stage indices (0-3). ``norm`` is
        accepted for timm's API; the stage norms are part of the network and always applied.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r} is not supported; accepted: 'NCHW'")
        _check_image_input(x, self.in_chans)
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        intermediates = []
        last = max_index if stop_early or intermediates_only else self.num_stages - 1
        for i in range(last + 1):
            x = self._stage(i, x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop stages after the last wanted one (and the classifier) for feature extraction."""
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        for i in range(max_index + 1, self.num_stages):
            for name in (f'patch_embed{i + 1}', f'blocks{i + 1}', f'norm{i + 1}'):
                delattr(self, name)
        self.num_stages = max_index + 1
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """[B, C4, h, w] -> [B, num_classes] (or the pooled [B, C4] with ``pre_logits``)."""
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_chans, H, W] -> logits [B, num_classes]."""
        return self.forward_head(self.forward_features(x))

    def for_inference(self, channels_last: bool = True, compile: bool = False) -> nn.Module:
        """An eval-only copy with BatchNorms, layer scales, FD and CA folded into convolutions (same function;
        see `moga_lab.models.fuse`). ``compile=True`` wraps it in ``torch.compile`` (inductor with weight
        freezing; needs a C++ compiler, compiles on the first call and again per new input shape or autocast dtype,
        ~1 min each). Measured on a 2-core AMD EPYC (``benchmarks/throughput.py``): compiled 1.05-1.2x faster than the
        eager fused model (fp32 and bf16); the eager model, with its oneDNN post-ops, needs no compile time."""
        fused = FusedMogaNet(self, channels_last=channels_last)
        if compile:
            return cast(nn.Module, torch.compile(fused, options={'freezing': True}))
        return fused

    fuse = for_inference

    def load_pretrained(self, checkpoint_path: str, use_ema: bool = True) -> None:
        """timm's hook for ``pretrained=True`` (the configs set ``custom_load``), for a downloaded release file or
        ``pretrained_cfg_overlay=dict(file=...)``: the authors' ``.pth.tar`` (``{'state_dict': ...}``, timm's
        trainer ``args`` allowed) or any wrapping `load_checkpoint` reads. EMA weights are
        used when the file holds them (timm's rule; the authors' loader reads ``state_dict``); a classifier of
        another size is dropped; ``in_chans`` other than 3 is adapted as timm does. Strict otherwise."""
        from timm.models import adapt_input_conv
        from moga_lab.models.checkpoint import load_checkpoint, read_weights
        state, entry = read_weights(checkpoint_path, use_ema=use_ema)
        first = cast(dict, getattr(self, 'pretrained_cfg', {})).get('first_conv', 'patch_embed1.projection.0') + '.weight'
        own = self.state_dict().get(first)
        if own is not None and first in state and state[first].shape[1] != own.shape[1]:
            state[first] = adapt_input_conv(own.shape[1], state[first])
        load_checkpoint(self, state, strict=True, allow_classifier_change=True)
        self.pretrained_source = f'{entry or "weights"} of {checkpoint_path}'


# ---- configs and factories ------------------------------------------------------------------------

# The authors' release (github.com/Westlake-AI/MogaNet, README "ImageNet-1K"); timm downloads them to its cache.
RELEASE_URL = 'https://github.com/Westlake-AI/MogaNet/releases/download/moganet-in1k-weights/'


class FusedMogaNet(MogaNet):
    """A trained MogaNet for inference: the same function with BatchNorms, layer scales, FD and CA folded into its
    convolutions (`moga_lab.models.fuse`), built by `MogaNet.for_inference`. Every MogaNet method that does not train
    works (``forward``, ``forward_features``, ``forward_intermediates``, ``forward_head``); it cannot be trained.

    Args:
        model: the trained network (left unchanged; its configuration is copied, its parts folded).
        channels_last: store the weights channels_last (the layout the fused convolutions run fastest in).
    """

    def __init__(self, model: MogaNet, channels_last: bool = True):
        nn.Module.__init__(self)  # not MogaNet.__init__: the parts come folded from ``model``, not freshly drawn
        if not isinstance(model, MogaNet):
            raise TypeError(f'FusedMogaNet takes a MogaNet; got {type(model).__name__}')
        for key, value in vars(model).items():  # the configuration: arch, widths, feature_info, pretrained_cfg, ...
            if not key.startswith('_') and key != 'training':
                setattr(self, key, copy.deepcopy(value))
        self.grad_checkpointing = False
        with torch.no_grad():  # (the folds read the BatchNorms' running statistics, whatever ``model``'s mode)
            for name, child in model.named_children():
                if name.startswith('patch_embed'):
                    folded = fold_patch_embed(child)
                elif name.startswith('blocks'):
                    folded = nn.ModuleList(FusedMogaBlock(cast(MogaBlock, block)) for block in cast(nn.ModuleList, child))
                else:  # stage norms, head dropout, head
                    folded = with_cast_cache(child)
                self.add_module(name, folded)
        super().train(False)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> 'FusedMogaNet':
        if mode:
            raise RuntimeError('a fused MogaNet is for inference only (BatchNorm statistics are folded into its '
                               'convolutions); train the unfused model')
        return super().train(False)

    def set_grad_checkpointing(self, enable: bool = True):
        if enable:
            raise RuntimeError('a fused MogaNet is for inference only; gradient checkpointing is for training')

    def for_inference(self, channels_last: bool = True, compile: bool = False) -> nn.Module:
        """Itself (already folded), or compiled with ``compile=True``."""
        return cast(nn.Module, torch.compile(self, options={'freezing': True})) if compile else self


def _cfg(file: str = '', **kwargs: Any):
    return {
        'url': RELEASE_URL + file if file else '',
        'custom_load': bool(file),  # MogaNet.load_pretrained reads the {'state_dict': ...} release format
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed1.projection.0', 'classifier': 'head',
        'license': 'apache-2.0', 'paper_ids': 'arXiv:2211.03295',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'moganet_xtiny.in1k': _cfg('moganet_xtiny_sz224_8xbs128_ep300.pth.tar'),
    'moganet_xtiny.in1k_256': _cfg('moganet_xtiny_sz256_8xbs128_ep300.pth.tar', input_size=(3, 256, 256),
                                   pool_size=(8, 8)),
    'moganet_tiny.in1k': _cfg('moganet_tiny_sz224_8xbs128_ep300.pth.tar'),
    'moganet_tiny.in1k_256': _cfg('moganet_tiny_sz256_8xbs128_ep300.pth.tar', input_size=(3, 256, 256),
                                  pool_size=(8, 8)),
    'moganet_small.in1k': _cfg('moganet_small_sz224_8xbs128_ep300.pth.tar'),
    'moganet_base.in1k': _cfg('moganet_base_sz224_8xbs128_ep300.pth.tar'),
    'moganet_large.in1k': _cfg('moganet_large_sz224_8xbs64_ep300.pth.tar'),
    'moganet_xlarge.in1k': _cfg('moganet_xlarge_sz224_8xbs64_ep300.pth.tar'),
})


def checkpoint_filter_fn(state_dict, model: MogaNet):
    """timm's own loading path (a ``pretrained_cfg_overlay`` file or url resets ``custom_load``): unwrap the release
    format (``{'state_dict': ...}``, EMA preferred as timm does) and the usual prefixes."""
    from moga_lab.models.checkpoint import read_weights
    return read_weights(state_dict, use_ema=True)[0]


def _create_moganet(variant: str, pretrained: bool = False, **kwargs: Any) -> MogaNet:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        MogaNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


@register_model
def moganet_xtiny(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_xtiny', pretrained, **dict(arch='xtiny', **kwargs))


@register_model
def moganet_tiny(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_tiny', pretrained, **dict(arch='tiny', **kwargs))


@register_model
def moganet_small(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_small', pretrained, **dict(arch='small', **kwargs))


@register_model
def moganet_base(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_base', pretrained, **dict(arch='base', **kwargs))


@register_model
def moganet_large(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_large', pretrained, **dict(arch='large', **kwargs))


@register_model
def moganet_xlarge(pretrained: bool = False, **kwargs: Any) -> MogaNet:
    return _create_moganet('moganet_xlarge', pretrained, **dict(arch='xlarge', **kwargs))
