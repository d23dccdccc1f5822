"""Grad-CAM (Selvaraju et al. 2017) through captum's LayerGradCam, for MogaNet, timm ConvNeXt and Swin.

Default layers (overridable with ``layer=``): MogaNet ``norm4`` (as the authors' ``cam_image.py``), ConvNeXt
``stages[-1]``, Swin ``layers[-1]`` -- whose stages output NHWC, so they are read through a permute to NCHW (captum
assumes channels in dim 1; without it the maps are silently wrong).
"""
import contextlib
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple, cast

import numpy as np
import torch
import torch.nn as nn

if TYPE_CHECKING:
    import pandas as pd

Interval = Tuple[float, float, float]  # (value, 95 % low, 95 % high)

__all__ = ['grad_cam', 'default_layer', 'explained_layer', 'mass_inside', 'mass_summary', 'plot_gradcam_grid']


class _ToNCHW(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class _ToNHWC(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


def _family(model: nn.Module) -> str:
    name = type(model).__name__
    if name == 'MogaNet':
        return 'moganet'
    if name == 'ConvNeXt':
        return 'convnext'
    if name in ('SwinTransformer', 'SwinTransformerV2'):
        return 'swin'
    return 'other'


def default_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains by default: MogaNet ``norm4`` (as the authors' script), timm ConvNeXt
    ``stages[-1]``, timm Swin ``layers[-1]``.

    Args:
        model: the classifier.

    Returns:
        The layer module.

    Raises:
        ValueError: another kind of model; pass ``layer=`` to `grad_cam`.
    """
    family, net = _family(model), cast(Any, model)  # (attributes of the model families named below)
    if family == 'moganet':
        return getattr(net, f'norm{net.num_stages}')
    if family == 'convnext':
        return net.stages[-1]
    if family == 'swin':
        return net.layers[-1]
    raise ValueError(f'grad_cam has no default layer for {type(model).__name__}; pass layer=<the module whose output '
                     f'is the feature map [B, C, h, w] to explain>, e.g. the last convolutional stage')


def _stage_candidates(model: nn.Module):
    """(name, module) of each family's stage outputs Grad-CAM can explain, deepest first."""
    if hasattr(model, 'norm1') and hasattr(model, 'num_stages'):                # MogaNet: the stage norms
        return [(f'norm{i}', getattr(model, f'norm{i}')) for i in range(int(getattr(model, 'num_stages')), 0, -1)]
    for attr in ('stages', 'layers'):                                         # timm ConvNeXt / Swin
        if isinstance(getattr(model, attr, None), torch.nn.Sequential):
            seq = getattr(model, attr)
            return [(f'{attr}.{i}', seq[i]) for i in range(len(seq) - 1, -1, -1)]
    layer = default_layer(model)
    return [(next(n for n, m in model.named_modules() if m is layer), layer)]


def explained_layer(model: nn.Module, images: torch.Tensor) -> Tuple[str, nn.Module, str]:
    """(name, module, map size) of the layer Grad-CAM explains by default: the deepest stage output whose map is still at least
    4x4, for every family alike. At 224 px that is each family's default (MogaNet norm4, the authors' choice; ConvNeXt
    ``stages.3``; Swin ``layers.3``: 7x7); on 28 px inputs the last stages are 2x2-3x3, too coarse to say where a
    model looks, so an earlier stage is taken (MogaNet norm3, ConvNeXt stages.2, Swin layers.2).

    Args:
        model: the classifier (MogaNet, timm ConvNeXt or Swin; other models get `default_layer`).
        images: a batch of the inputs to explain (one image is run to read the maps' sizes).
    """
    candidates = _stage_candidates(model)
    shapes: Dict[str, Tuple[int, ...]] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape)))
               for n, m in candidates]
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for h in handles:
            h.remove()
    nhwc = type(model).__name__.startswith('SwinTransformer')  # timm Swin stages are NHWC, the others NCHW

    def hw(name):
        shape = shapes[name]
        return (shape[1], shape[2]) if nhwc else shape[-2:]
    name, layer = next(((n, m) for n, m in candidates if min(hw(n)) >= 4), candidates[0])
    h, w = hw(name)
    return name, layer, f'{h}x{w}'


@contextlib.contextmanager
def _nchw_view(model: nn.Module, layer: nn.Module):
    """For a Swin stage (any of ``model.layers``): temporarily follow it by NHWC->NCHW->NHWC and yield the NCHW
    module to hook."""
    stages = cast(Any, model).layers if _family(model) == 'swin' else []
    index = next((i for i, m in enumerate(stages) if m is layer), None)
    if index is None:
        yield layer
        return
    to_nchw = _ToNCHW()
    stages[index] = nn.Sequential(layer, to_nchw, _ToNHWC())
    try:
        yield to_nchw
    finally:
        stages[index] = layer


def grad_cam(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
             layer: Optional[nn.Module] = None) -> torch.Tensor:
    """Grad-CAM maps at input resolution, through captum's ``LayerGradCam``.

    ReLU on the attribution, upsampled bilinearly with captum, then divided by each map's maximum (an all-zero map,
    where no location supports the class, stays zero). Swin's NHWC outputs are permuted to NCHW for captum.

    Args:
        model: the classifier (any ``nn.Module``; set to eval mode for the call).
        images: normalised [B, C, H, W].
        targets: [B] class per image; None = the top-1 prediction.
        layer: the layer to explain; None = `explained_layer` (the deepest stage whose map is at least 4x4).

    Returns:
        float [B, H, W] maps in [0, 1].

    Example:
        ```python
        maps = grad_cam(model, images, labels, layer=model.norm3)     # a finer map than norm4 on 28 px inputs
        ```
    """
    from captum.attr import LayerAttribution, LayerGradCam

    if images.ndim != 4:
        raise ValueError(f'images must be [B, C, H, W]; got shape {tuple(images.shape)}')
    was_training = model.training
    model.eval()
    try:
        if targets is None:
            with torch.no_grad():
                targets = model(images).argmax(1)
        targets = torch.as_tensor(targets, dtype=torch.long, device=images.device).reshape(-1)
        if len(targets) != len(images):
            raise ValueError(f'{len(targets)} targets for {len(images)} images')
        layer = layer if layer is not None else explained_layer(model, images)[1]
        with _nchw_view(model, layer) as hooked, torch.enable_grad():
            attr = LayerGradCam(model, hooked).attribute(images, target=targets, relu_attributions=True)
        if attr.ndim != 4 or attr.shape[0] != len(images):
            raise ValueError(f'the chosen layer gives attributions of shape {tuple(attr.shape)}; it must output a '
                             f'feature map [B, C, h, w]')
        maps = LayerAttribution.interpolate(attr, tuple(images.shape[-2:]), interpolate_mode='bilinear')[:, 0]
        maps = maps.clamp_min(0)  # bilinear interpolation of a ReLU map stays >= 0 up to rounding
        peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return (maps / peak).detach()
    finally:
        model.train(was_training)


def mass_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each map's mass that falls inside its mask: the energy-based pointing game (Wang et al.,
    Score-CAM, CVPR-W 2020), a number for "the map concentrates on the object".

    1 means all of the map lies on the object; a map spread evenly over the image gives the mask's area share, the
    baseline to compare against. An all-zero map (no location supports the class) has no mass to place: NaN.

    Args:
        maps: [B, H, W] non-negative maps, e.g. from `grad_cam`.
        masks: [B, H, W] boolean, True on the object.

    Returns:
        float [B] shares in [0, 1] (NaN for all-zero maps).

    Example:
        ```python
        masks = raw_pixels > 0.1                      # e.g. Fashion-MNIST: the garment on a black background
        share = mass_inside(grad_cam(model, images), masks).nanmean()
        ```
    """
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f'maps and masks must both be [B, H, W]; got {tuple(maps.shape)} and {tuple(masks.shape)}')
    if (maps < 0).any():
        raise ValueError('maps must be non-negative (Grad-CAM maps after the ReLU)')
    total = maps.flatten(1).sum(1)
    inside = (maps * masks.to(maps.dtype)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float('nan')))


def _bootstrap(values, paired_with=None, seed: int = 0):
    """Mean (or paired mean difference) with the 95 % percentile bootstrap over images (`.bootstrap`)."""
    from moga_lab.analysis.bootstrap import bootstrap_images
    a = np.asarray(values, dtype=float)
    b = None if paired_with is None else np.asarray(paired_with, dtype=float)
    stat = (lambda idx: a[idx].mean(-1)) if b is None else (lambda idx: a[idx].mean(-1) - b[idx].mean(-1))
    low, high, _ = bootstrap_images(stat, len(a), 2000, seed)
    return float(stat(np.arange(len(a))[None])[0]), float(low), float(high)


def mass_summary(table: 'pd.DataFrame', names: Sequence[str], seed: int = 0) -> Tuple[Dict[str, Interval],
                                                                                      Dict[str, Interval], float, int]:
    """Summarise per-image shares of Grad-CAM mass inside the object (`mass_inside`) for a comparison of models.

    Args:
        table: a pandas DataFrame with columns ``model``, ``image_id``, ``cam_on_garment`` (the share; NaN where the
            map is all zero) and ``garment_area`` (the mask's share of the image), e.g. compare_models' ``gradcam.csv``.
        names: the models, the first being the one the others are compared with.
        seed: the bootstrap's seed.

    Returns:
        ``(per_model, differences, area, n)``: per model (mean, 95 % low, high) over the images; for every other
            model the paired difference first minus it on the same images (difference, low, high); the mean object
            area (what an evenly spread map gets); the number of images used. Only images whose map is non-zero for
            every model are used; with fewer than 2 every number is NaN.
    """
    wide = table.pivot(index='image_id', columns='model', values='cam_on_garment')[list(names)]
    keep = wide.notna().all(axis=1)
    shares = {k: wide[k][keep].to_numpy() for k in names}
    first = names[0]
    if keep.sum() < 2:  # (e.g. barely trained models): no interval to give
        nan = (float('nan'),) * 3
        return {k: nan for k in names}, {k: nan for k in names if k != first}, float('nan'), int(keep.sum())
    rows = {k: _bootstrap(v, seed=seed) for k, v in shares.items()}
    diffs = {k: _bootstrap(shares[first], shares[k], seed=seed) for k in names if k != first}
    area = table[table.model == first].set_index('image_id').garment_area[keep[keep].index].mean()
    return rows, diffs, float(area), int(keep.sum())


def _wrap_name(name: str, width: int = 18) -> str:
    """'swin_tiny_patch4_window7_224' -> 'swin_tiny_patch4_\\nwindow7_224': long timm names over lines at '_', so
    neighbouring column titles do not run into each other."""
    lines, line = [], ''
    for part in name.replace('_', '_\0').split('\0'):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ''
        line += part
    return '\n'.join(lines + [line])


def plot_gradcam_grid(images: torch.Tensor, maps: Sequence[torch.Tensor], model_names: Sequence[str],
                      labels: torch.Tensor, predictions: Sequence[torch.Tensor], class_names: Sequence[str],
                      mean: Sequence[float], std: Sequence[float], path: str, alpha: float = 0.5) -> None:
    """A PNG grid: rows are images; columns are the input and one Grad-CAM overlay per model, titled with the
    predicted class (green when right, red when wrong).

    Args:
        images: normalised [B, C, H, W].
        maps: per model, [B, H, W] maps of `grad_cam`.
        model_names: column titles, one per model.
        labels: [B] ground-truth classes.
        predictions: per model, [B] predicted classes.
        class_names: names of the classes.
        mean: the normalisation mean (to show the input).
        std: the normalisation std.
        path: the PNG to write (atomically).
        alpha: opacity of the overlay.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from moga_lab.analysis.plots import save_figure

    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)
    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.6, 1.9 * rows + 0.4), squeeze=False)
    for r in range(rows):
        img = (images[r].cpu() * std_t + mean_t).clamp(0, 1)
        img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
        cmap = 'gray' if img.ndim == 2 else None
        ax = axes[r, 0]
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f'true: {class_names[int(labels[r])]}', fontsize=8)
        for c, (name, m, pred) in enumerate(zip(model_names, maps, predictions), start=1):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
            im = ax.imshow(m[r].cpu(), cmap='jet', alpha=alpha, vmin=0, vmax=1)
            p = int(pred[r])
            ax.set_title(f'pred: {class_names[p]}', fontsize=8, color='green' if p == int(labels[r]) else 'red')
            if r == 0:
                ax.annotate(_wrap_name(name), (0.5, 1.32), xycoords='axes fraction', ha='center', va='bottom',
                            fontsize=9, weight='bold')
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].annotate('input', (0.5, 1.32), xycoords='axes fraction', ha='center', va='bottom', fontsize=9,
                        weight='bold')
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label='Grad-CAM (normalised)')
    save_figure(fig, path)
    plt.close(fig)
