"""Interaction curves of several named models on the same images, pairs and contexts, with a per-(model, image)
cache: a study building block for commands that compare models outside a study file (``moga-baseline-sensitivity``)."""
import os
from typing import Optional, Sequence

import pandas as pd
import torch

from moga_lab.analysis.estimate import InteractionSettings, evaluation_model, interaction_strength
from moga_lab.analysis.tables import check_design
from moga_lab.loaders import NamedModel
from moga_lab.utils.atomic import atomic_write_csv

__all__ = ['interaction_of_models']


def interaction_of_models(models: Sequence[NamedModel], images: torch.Tensor, labels: torch.Tensor,
                          ids: Sequence[int], settings: InteractionSettings, cache: Optional[str] = None,
                          progress: bool = True, data_dir: Optional[str] = None,
                          eval_transform: str = 'auto') -> pd.DataFrame:
    """Per-image strength rows of every model on the same ``images`` [N, C, H, W], pairs and contexts.

    With ``cache`` (a CSV path), finished (model, image) rows are kept across runs (written after each image, so a
    stopped run resumes); a cache of another design is refused (`moga_lab.analysis.tables.check_design`). The
    ``pixel-mean`` baseline is each pixel's mean over the fit checkpoints' training split, or over the images of
    ``data_dir`` (seen through ``eval_transform``) for released weights on an ImageFolder, which has no training split.

    Args:
        models: the named models (`moga_lab.loaders.load_models`).
        images: normalised [N, C, H, W].
        labels: [N] classes.
        ids: the images' ids.
        settings: the design.
        cache: a CSV of finished rows (None: no cache).
        progress: a progress bar.
        data_dir: the ImageFolder of released weights (``pixel-mean``).
        eval_transform: its transform.
    """
    from tqdm.auto import tqdm
    done = pd.read_csv(cache) if cache and os.path.isfile(cache) else None
    if done is not None and cache:
        check_design(done, settings, cache)
    frames = [done] if done is not None else []
    pixel_mean = None
    if settings.baseline == 'pixel-mean':  # each pixel's mean over the models' training split (one data set for all)
        from moga_lab.loaders import pixel_mean_image
        pixel_mean = pixel_mean_image(models, data_dir=data_dir, transform=eval_transform)
    bar = tqdm(total=len(models) * len(ids), desc='interaction', disable=not progress)
    for m in models:
        runner = None
        for k, image_id in enumerate(ids):
            if done is not None and ((done.model == m.name) & (done.image_id == image_id)).any():
                bar.update(1)
                continue
            runner = runner or evaluation_model(m.model, settings)  # fused once per model
            frames.append(interaction_strength(runner, images[k:k + 1], labels[k:k + 1], settings, model_name=m.name,
                                               image_ids=[image_id], pixel_mean=pixel_mean, mean=m.mean or (0.0,),
                                               std=m.std or (1.0,)))
            if cache:
                atomic_write_csv(cache, pd.concat(frames, ignore_index=True))
            bar.update(1)
    bar.close()
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame.model.isin([m.name for m in models]) & frame.image_id.isin(list(ids))]
