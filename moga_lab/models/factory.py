"""Build any supported classifier by name: MogaNet (with its ablation switches) or a timm ConvNeXt / Swin
baseline adapted to the input size. Small inputs (<= 64 px) get a stride-2 stem everywhere, so the three
families see the same resolution per stage:

* MogaNet: ``stem_stride=2``. With the reference stride 4, a 28 px image leaves a 1x1 map in the last
  stage, where feature decomposition (x - GAP(x)) is identically zero and the dilated DW convs see only their
  centre tap; stride 2 keeps 2x2 there (cost: ~1.8x the compute of stride 4).
* ConvNeXt: ``patch_size=1`` (timm gives stage 0 stride 2 when the patch stem has stride 2, so 2 would
  still be stride 4 overall and a 28 px input cannot pass the last down-sampling): stages at 28/14/7/3 px.
* Swin: ``patch_size=2`` and a window that tiles the token grid (7 for 28 px, 4 for 32 px).
"""
from typing import Any, Dict, Optional, Sequence

import timm
import torch.nn as nn

from moga_lab.models.moganet import resolve_variant

__all__ = ['create_classifier', 'is_moganet', 'MIN_IMAGE_SIZE', 'SMALL_IMAGE_MAX', 'BASELINE_PREFIXES', 'SMALL_BASELINES']

SMALL_IMAGE_MAX = 64
# smallest image side accepted: four stages of down-sampling (stem stride 2 or 4, then 2, 2, 2) still leave a map
MIN_IMAGE_SIZE = 16
BASELINE_PREFIXES = ('convnext_', 'swin_')
# Swin below swin_tiny (28M) for CPU comparisons with MogaNet-XT/T: same layout, narrower and fewer heads.
SMALL_BASELINES = {
    'swin_femto': ('swin_tiny_patch4_window7_224', dict(embed_dim=32, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8))),
    'swin_pico': ('swin_tiny_patch4_window7_224', dict(embed_dim=48, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16))),
}


def is_moganet(name: str) -> bool:
    """True for ``moganet_*`` names (the MogaNet family, built with its ablation switches)."""
    return name.lower().startswith('moganet')


def _swin_window(tokens: int, requested: Optional[int]) -> int:
    if requested is not None:
        if tokens % requested:
            raise ValueError(f'Swin window_size={requested} does not tile the {tokens}x{tokens} token grid; '
                             f'accepted: a divisor of {tokens}')
        return requested
    for w in (7, 8, 4, 6, 5, 3, 2):
        if tokens % w == 0:
            return w
    raise ValueError(f'no Swin window tiles a {tokens}x{tokens} token grid; choose another image size')


def create_classifier(name: str, num_classes: int, in_chans: int, image_size: int, drop_path_rate: float = 0.,
                      stem_stride: Optional[int] = None, gating: bool = True, gate_act: str = 'silu',
                      dilations: Sequence[int] = (1, 2, 3), channel_split: Sequence[int] = (1, 3, 4),
                      feat_decompose: bool = True, channel_aggregation: bool = True, attn_force_fp32: bool = False,
                      extra: Optional[Dict[str, Any]] = None) -> nn.Module:
    """A classifier [B, in_chans, image_size, image_size] -> [B, num_classes] by name, adapted to the image size.

    MogaNet comes from timm's registry (``moganet_*``); ConvNeXt and Swin are timm's, with small-image stems at
    ``image_size <= 64`` (module docstring). The keyword switches are MogaNet's ablation switches (the fields of
    ``moga_lab.training.ModelConfig``); baselines ignore them.

    Args:
        name: ``moganet_<variant>`` (or an alias such as ``xt``), any timm ``convnext_*`` / ``swin_*`` name, or
            ``swin_femto`` / ``swin_pico``.
        num_classes: classifier size.
        in_chans: input channels (1 for Fashion-MNIST).
        image_size: input side in pixels; decides the small-image stems and Swin's window.
        drop_path_rate: stochastic depth rate.
        stem_stride: MogaNet stem stride 4, 2 or 1; None = 2 at <= 64 px, else 4.
        gating: MogaNet's gating branch.
        gate_act: activation of the gating and value branches ('silu', 'sigmoid', 'gelu', 'identity').
        dilations: dilations of the three multi-order depth-wise convolutions.
        channel_split: relative channels of the three orders.
        feat_decompose: feature decomposition in the spatial block.
        channel_aggregation: channel aggregation in the FFN.
        attn_force_fp32: the reference's flag (gating product in float32, activation applied twice).
        extra: further keyword arguments passed to ``timm.create_model`` as they are.

    Returns:
        The network (an ``nn.Module`` in train mode).

    Raises:
        ValueError: an unknown name, or an image size the model cannot take (the message says what is accepted).

    Example:
        ```python
        model = create_classifier('moganet_xtiny', num_classes=10, in_chans=1, image_size=28, gating=False)
        ```
    """
    small = image_size <= SMALL_IMAGE_MAX
    extra = dict(extra or {})
    if is_moganet(name):
        variant = resolve_variant(name)
        stem_stride = stem_stride if stem_stride is not None else (2 if small else 4)
        return timm.create_model(
            f'moganet_{variant}', num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path_rate,
            stem_stride=stem_stride, gating=gating, gate_act=gate_act, dilations=tuple(dilations),
            channel_split=tuple(channel_split), feat_decompose=feat_decompose,
            channel_aggregation=channel_aggregation, attn_force_fp32=attn_force_fp32, **extra)
    base = name
    if name in SMALL_BASELINES:
        base, preset = SMALL_BASELINES[name]
        extra = {**preset, **extra}
    if not base.startswith(BASELINE_PREFIXES) or base not in timm.list_models():
        accepted = ['moganet_<xtiny|tiny|small|base|large|xlarge>'] + timm.list_models('convnext_*')[:8] + \
            ['swin_tiny_patch4_window7_224', 'swin_small_patch4_window7_224'] + list(SMALL_BASELINES)
        raise ValueError(f'unknown model {name!r}; accepted: {", ".join(accepted)}, or any timm convnext_*/swin_* name')
    if base.startswith('convnext_'):
        if small:
            extra.setdefault('patch_size', 1)
        return timm.create_model(base, num_classes=num_classes, in_chans=in_chans,
                                 drop_path_rate=drop_path_rate, **extra)
    patch = extra.pop('patch_size', 2 if small else 4)
    if image_size % patch:
        raise ValueError(f'image size {image_size} is not a multiple of the Swin patch size {patch}')
    window = _swin_window(image_size // patch, extra.pop('window_size', None if small else 7))
    return timm.create_model(base, num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path_rate,
                             img_size=image_size, patch_size=patch, window_size=window, **extra)
