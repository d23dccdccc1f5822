"""Building blocks of the study scripts (``experiments/ablate.py``, ``analysis/compare_models.py``): train a
variant under a fixed budget (resumable), count parameters and MACs, interaction curves of several
checkpoints on the same images, pairs and contexts."""
import dataclasses
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
import torch
import yaml
from filelock import FileLock

from moga_lab.analysis.coalitions import ORDER_RATIOS
from moga_lab.analysis.estimate import InteractionSettings, evaluation_model, interaction_strength
from moga_lab.analysis.tables import check_design
from moga_lab.loaders import NamedModel, load_classifier, load_eval_images
from moga_lab.utils.runtime import describe_machine
from moga_lab.training import ModelConfig, build_model, fit, small_data_recipe

__all__ = ['Budget', 'train_variant', 'count_params_macs', 'interaction_of_checkpoints', 'interaction_of_models',
           'check_interaction_cache', 'load_study_config', 'provenance', 'trained_on', 'publish_artefacts',
           'add_wall_time', 'wall_time', 'finished_interaction', 'seed_tables', 'reported_checkpoint',
           'ARTEFACT_SUFFIXES']

ARTEFACT_SUFFIXES = ('.csv', '.md', '.png')
"""What a study publishes (tables, report, figures); checkpoints, logs and run folders stay where they are."""


@dataclass
class Budget:
    """A study's training budget, the same for every row / model: base model, epochs (and a limit of batches per
    epoch), batch size, learning rate, stochastic depth, seeds, data folder and image size."""
    model: str = 'moganet_xtiny'
    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    seeds: List[int] = field(default_factory=lambda: [0])
    limit_train_batches: Optional[float] = None
    limit_test_batches: Optional[float] = None
    data_dir: Optional[str] = None
    image_size: Optional[int] = None     # None = the data's own (28 px for Fashion-MNIST); e.g. 56 to resize
    drop_path_rate: float = 0.05

    def __post_init__(self):
        # a study config is a file the user wrote: say which value is wrong before anything is trained or written
        from moga_lab.models.factory import MIN_IMAGE_SIZE

        def integer(v, low):
            return isinstance(v, int) and not isinstance(v, bool) and v >= low
        checks = [
            ('epochs', integer(self.epochs, 1), 'an integer >= 1'),
            ('batch_size', integer(self.batch_size, 1), 'an integer >= 1'),
            ('lr', isinstance(self.lr, (int, float)) and self.lr > 0, 'a positive number'),
            ('drop_path_rate', isinstance(self.drop_path_rate, (int, float)) and 0 <= self.drop_path_rate < 1,
             'a number in [0, 1)'),
            ('seeds', isinstance(self.seeds, list) and len(self.seeds) > 0 and all(integer(s, 0) for s in self.seeds),
             'a non-empty list of integers >= 0'),
            ('image_size', self.image_size is None or integer(self.image_size, MIN_IMAGE_SIZE),
             f'null or an integer >= {MIN_IMAGE_SIZE}'),
        ]
        for limit in ('limit_train_batches', 'limit_test_batches'):
            v = getattr(self, limit)
            checks.append((limit, v is None or (isinstance(v, (int, float)) and v > 0),
                           'null, a fraction in (0, 1] or a number of batches'))
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(f'budget {name}={getattr(self, name)!r} is not accepted; accepted: {accepted}')

    @classmethod
    def from_config(cls, values: Dict[str, Any], **overrides) -> 'Budget':
        """A budget from a study YAML's ``budget`` section; a ValueError names unknown keys and bad values."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f'unknown budget keys {unknown}; accepted: {", ".join(known)}')
        return cls(**{**values, **overrides})

    def describe_epochs(self) -> str:
        """'1 epoch over 0.25 of the training set', '3 epochs' — the training budget as the reports state it."""
        limit = self.limit_train_batches
        part = '' if limit is None else (f' over {limit:g} of the training set' if limit <= 1 else f' of {limit:g} batches')
        return f'{self.epochs} epoch{"" if self.epochs == 1 else "s"}{part}'


def load_study_config(path: str) -> Dict[str, Any]:
    """A study YAML (sections budget, interaction, rows or models); a ValueError naming unknown sections."""
    with open(path) as f:
        cfg = yaml.safe_load(f)
    unknown = set(cfg) - {'budget', 'interaction', 'rows', 'models'}
    if unknown:
        raise ValueError(f'{path}: unknown sections {sorted(unknown)}; accepted: budget, interaction, rows, models')
    return cfg


def train_variant(run_dir: str, budget: Budget, seed: int, model_name: Optional[str] = None,
                  **switches) -> Dict[str, Any]:
    """Train ``model_name`` (default the budget's) with MogaNet ``switches`` under ``budget``; returns the run's
    results.yaml. Resumable: a finished run is read back, an interrupted one continues from last.ckpt."""
    results = os.path.join(run_dir, 'results.yaml')
    if os.path.isfile(results):
        with open(results) as f:
            return yaml.safe_load(f)
    cfg = small_data_recipe('xtiny')
    cfg.model.name = model_name or budget.model
    cfg.model.drop_path_rate = budget.drop_path_rate
    for key, value in switches.items():
        if not hasattr(cfg.model, key):
            raise ValueError(f'unknown model switch {key!r}; accepted: gating, gate_act, dilations, channel_split, '
                             f'feat_decompose, channel_aggregation, stem_stride, drop_path_rate')
        setattr(cfg.model, key, tuple(value) if isinstance(value, list) else value)
    cfg.data.batch_size = budget.batch_size
    cfg.data.data_dir = budget.data_dir
    cfg.data.image_size = budget.image_size
    cfg.optim.lr = budget.lr
    t = cfg.trainer
    t.epochs, t.seed, t.run_dir = budget.epochs, seed, run_dir
    t.limit_train_batches, t.limit_test_batches = budget.limit_train_batches, budget.limit_test_batches
    t.val_check_interval = None
    t.progress_bar = False
    if budget.limit_train_batches is not None and budget.limit_train_batches > 1:
        t.limit_val_batches = 2
    fit(cfg, resume=os.path.isfile(os.path.join(run_dir, 'last.ckpt')))
    with open(results) as f:
        return yaml.safe_load(f)


def reported_checkpoint(run_dir: str) -> str:
    """The checkpoint of a `train_variant` run whose test top-1 its results.yaml reports (``best.ckpt``: best
    val/acc1), else its ``last.ckpt``: the one whose interactions and Grad-CAM a study computes."""
    best = os.path.join(run_dir, 'best.ckpt')
    return best if os.path.isfile(best) else os.path.join(run_dir, 'last.ckpt')


def shared_from(run_dir: str) -> Optional[str]:
    """Where a run folder was trained when it was copied in from another study (e.g. the comparison reuses the grid's
    full row as a comparison's MogaNet-XT), else None: its ``config.yaml`` names the folder it trained in. Compared
    by the folder's own path components (the model or row, and ``seed<S>`` when the folder is a later seed's), so a
    study folder that was moved as a whole still counts as trained in place."""
    path = os.path.join(run_dir, 'config.yaml')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        trained = str(((yaml.safe_load(f) or {}).get('trainer') or {}).get('run_dir') or '')
    if not trained:
        return None
    ours = os.path.normpath(run_dir).split(os.sep)
    depth = 2 if ours[-1].startswith('seed') and ours[-1][4:].isdigit() else 1
    theirs = os.path.normpath(trained).split(os.sep)
    return None if theirs[-depth:] == ours[-depth:] else trained


def count_params_macs(model_cfg: ModelConfig, num_classes: int = 10, in_chans: int = 1, image_size: int = 28):
    """(parameters, MACs) at one image; MACs through torch's FlopCounterMode (`moga_lab.utils.flops`)."""
    from moga_lab.utils.flops import count_macs
    model = build_model(model_cfg, num_classes, in_chans, image_size)
    return sum(p.numel() for p in model.parameters()), count_macs(model, torch.zeros(1, in_chans, image_size, image_size))


def interaction_of_checkpoints(checkpoints: Dict[str, str], num_images: int, grid: int, pairs: int, contexts: int,
                               ratios: Sequence[float] = ORDER_RATIOS, seed: int = 0, cache: Optional[str] = None,
                               progress: bool = True, target_ci: Optional[float] = None,
                               max_forwards: Optional[int] = None, wall_times: Optional[str] = None,
                               baseline: str = 'zero', design: str = 'fixed',
                               share: Optional[int] = None) -> pd.DataFrame:
    """Per-image strength rows for every fit checkpoint (name -> path) on the same test images and pairs (drawn
    with ``seed``); see `interaction_of_models`. When ``cache`` already holds all ``num_images`` images of every
    name (in this design), they are returned without loading any checkpoint: a finished study's curves can be kept
    (e.g. in git) without its checkpoints. ``design`` / ``share``: `moga_lab.analysis.estimate.InteractionSettings`'s
    (the precision mode is chosen by ``target_ci``)."""
    settings = InteractionSettings(grid=grid, num_pairs=pairs, num_contexts=contexts, ratios=tuple(ratios), seed=seed,
                                   target_ci=target_ci, max_forwards=max_forwards, baseline=baseline,
                                   design='two-phase' if target_ci is not None else design, share=share)
    check_interaction_cache(cache, settings)
    done = finished_interaction(cache, list(checkpoints), num_images)
    if done is not None:
        return done
    models = [load_classifier(path, name) for name, path in checkpoints.items()]
    images = load_eval_images(models[0], num_images, seed=seed)
    return interaction_of_models(models, images.images, images.labels, images.ids, settings, cache, progress,
                                 wall_times=wall_times)


def finished_interaction(cache: Optional[str], names: Sequence[str], num_images: int) -> Optional[pd.DataFrame]:
    """The cached per-image rows of ``names`` when the CSV at ``cache`` holds all ``num_images`` images of every one
    of them (with the debiased columns), else None: the one test of "these curves are finished" that the studies
    share (a part-done cache is resumed, never reported).

    Args:
        cache: a per-image interaction CSV a study wrote (None or absent: not finished).
        names: the model (row) names whose curves are needed.
        num_images: the images each curve needs.
    """
    if not cache or not os.path.isfile(cache):
        return None
    done = pd.read_csv(cache)
    if 'I2' not in done.columns or not all(done.image_id[done.model == name].nunique() >= num_images for name in names):
        return None
    return done[done.model.isin(list(names))].reset_index(drop=True)


SEED_TABLES = ('interaction_seeds.csv', 'seed_shares.csv', 'seed_shares.png')
"""What `seed_tables` writes into a study folder."""


SEED_PLAN_DIFFERENCE = 0.03  # a middle-share difference the size of the larger seed-0 effects of the 28 px grid


def _seed_plan(seeded: pd.DataFrame, reference: str, noun: str, band: Sequence[float],
               statistic: str = 'mean-abs') -> List[str]:
    """What these seeds and images decide, and how many seeds would decide a difference of `SEED_PLAN_DIFFERENCE`:
    from the variance components of the first difference with ``reference`` (`moga_lab.analysis.power`)."""
    from moga_lab.analysis.power import components_of, decidable_effect, design_for
    from moga_lab.analysis.seeds import middle_share_difference_over_seeds
    others = [n for n in dict.fromkeys(seeded.model) if n != reference]
    if not others or reference not in set(seeded.model):
        return []
    fitted = middle_share_difference_over_seeds(seeded, reference, others[0], *band, statistic=statistic,
                                                per_seed_intervals=False).interval
    if fitted.num_seeds < 2:
        return []
    components = components_of(fitted)
    need = design_for(SEED_PLAN_DIFFERENCE, components, 0.05, images=(fitted.num_images,))[fitted.num_images]
    return ['', f'Planning (`moga_lab.analysis.power`): with {fitted.num_seeds} seeds and {fitted.num_images} images, '
            f'a difference of {noun}s is decided with 80 % power (two-sided, 5 %) from '
            f'{decidable_effect(fitted.se, fitted.df, 0.05):.3f}; {SEED_PLAN_DIFFERENCE:.2f} needs '
            + (f'{need} seeds' if need else 'more than 40 seeds') + f' on {fitted.num_images} images (the variance '
            f'components of {reference} minus {others[0]}).']


def seed_tables(out: str, frame: pd.DataFrame, seeds: Sequence[int], num_images: int, band: Sequence[float],
                reference: str, title: str, caption: str, noun: str = 'row') -> str:
    """The Markdown section of a study whose curves exist on several training seeds' checkpoints: each name's
    middle share per seed, and ``reference`` minus each other name on every seed and across seeds. Shared by the
    ablation grid (rows; ``ablate.py --curve-seeds``) and the comparison (models; ``compare_models.py
    --train-seeds``): both keep a later seed's curves in ``<out>/<name>/seed<S>/interaction.csv``, on the same
    images, pairs and design as the first seed's (``frame``). A later seed counts once its cache holds all the
    images (`finished_interaction`). Writes ``interaction_seeds.csv`` (the tidy per-image table with a seed column),
    ``seed_shares.csv`` and ``seed_shares.png`` into ``out``, or removes them (and returns '') when no name has
    curves on two seeds, so that an earlier report's tables are not published.

    Args:
        out: the study folder.
        frame: the per-image rows of the first seed's curves (``model``, ``image_id``, ...).
        seeds: the training seeds, the first being the one ``frame`` is on.
        num_images: the images each curve needs.
        band: the middle orders (fractions of n).
        reference: the name the others are compared with ('full', or the comparison's MogaNet).
        title: the figure's title (say the budget).
        caption: the budget as the figure's caption states it.
        noun: what the names are ('row' or 'model'), for the text.
    """
    from moga_lab.analysis.tables import describe_precision
    from moga_lab.analysis.plots import plot_middle_share_by_seed
    from moga_lab.analysis.seeds import middle_share_by_seed, middle_share_difference_over_seeds
    from moga_lab.utils.atomic import atomic_write_csv

    parts = [frame.assign(seed=seeds[0])]
    for name in frame.model.unique():
        for seed in seeds[1:]:
            done = finished_interaction(os.path.join(out, name, f'seed{seed}', 'interaction.csv'), [name], num_images)
            if done is not None:
                parts.append(done.assign(seed=seed))
    seeded = pd.concat(parts, ignore_index=True)
    counts = seeded.groupby('model').seed.nunique()
    seeded = seeded[seeded.model.isin(counts[counts > 1].index)]
    if seeded.empty:
        for stale in SEED_TABLES:
            if os.path.isfile(os.path.join(out, stale)):
                os.remove(os.path.join(out, stale))
        return ''
    shares = middle_share_by_seed(seeded, *band)
    atomic_write_csv(os.path.join(out, 'interaction_seeds.csv'), seeded)
    atomic_write_csv(os.path.join(out, 'seed_shares.csv'), shares)
    used = sorted(shares.seed.unique())
    plot_middle_share_by_seed(shares, os.path.join(out, 'seed_shares.png'), band=band, title=title)
    lines = ['', f"Middle share on each training seed's checkpoint ({noun}s with curves on several seeds: the same "
             'images, pairs and design; 95 % bootstrap interval over the images):', '',
             f'| {noun} | ' + ' | '.join(f'seed {s}' for s in used) + ' | mean ± s.d. over seeds |',
             '| --- |' + ' --- |' * len(used) + ' ---: |']
    for name, sub in shares.groupby('model', sort=False):
        by = sub.set_index('seed')
        cells = [f"{by.share[s]:.3f} [{by.ci_low[s]:.3f}, {by.ci_high[s]:.3f}]" if s in by.index else '–' for s in used]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {sub.share.mean():.3f} ± {sub.share.std(ddof=1):.3f} |')
    lines += [''] + [f'Seed {s}: {describe_precision(seeded[seeded.seed == s])}.' for s in used[1:]]
    if reference in set(shares.model) and shares.model.nunique() > 1:
        lines += ['', f"The middle share of {reference} minus that of each {noun} on every seed's checkpoints (seed k "
                  f"of both, paired bootstrap over the images) and across seeds (mean over the seeds of the paired difference, "
                  "95 % interval over seeds and images: moga_lab.analysis.seeds):", '',
                  f'| {noun} | ' + ' | '.join(f'seed {s}' for s in used) + ' | across seeds | decided across seeds? |',
                  '| --- |' + ' --- |' * len(used) + ' --- | --- |']
        for name in shares.model.unique():
            if name == reference:
                continue
            d = middle_share_difference_over_seeds(seeded, reference, name, *band)
            cells = [f"{d.per_seed[s].difference:+.3f} ({d.per_seed[s].ci_low:+.3f} to "
                     f"{d.per_seed[s].ci_high:+.3f})" if s in d.per_seed else '–' for s in used]
            iv = d.interval
            if iv.num_seeds > 1:
                across = f"{iv.estimate:+.3f} ({iv.low:+.3f} to {iv.high:+.3f})"
                verdict = (f'yes: {reference} higher' if iv.low > 0 else f'yes: {reference} lower'
                           if iv.high < 0 else 'no (interval contains 0)')
            else:
                across, verdict = f"{iv.estimate:+.3f}", 'one seed in common: over images only'
            lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {across} | {verdict} |')
    lines += _seed_plan(seeded, reference, noun, band)
    lines += ['', f'![middle-order share of each {noun} on each training seed ({frame.image_id.nunique()} test images, '
              f'95 % intervals over images; bar: mean over seeds; {caption})](seed_shares.png)']
    return '\n'.join(lines) + '\n'


def check_interaction_cache(cache: Optional[str], settings: InteractionSettings) -> None:
    """Raise ValueError when the cached per-image results at ``cache`` were computed with another design than
    ``settings`` (grid, pairs, contexts, precision target, orders): reusing them would mix two designs in one curve.

    Args:
        cache: the CSV an earlier run of a study wrote (nothing to check when it is None or absent).
        settings: the design of this run.
    """
    if not cache or not os.path.isfile(cache):
        return
    done = pd.read_csv(cache)
    if 'I2' in done.columns:  # (written before the debiased statistic: recomputed anyway)
        check_design(done, settings, cache)


def interaction_of_models(models: Sequence[NamedModel], images: torch.Tensor, labels: torch.Tensor,
                          ids: Sequence[int], settings: InteractionSettings, cache: Optional[str] = None,
                          progress: bool = True, wall_times: Optional[str] = None,
                          data_dir: Optional[str] = None, eval_transform: str = 'auto') -> pd.DataFrame:
    """Per-image strength rows of every model on the same ``images`` [N, C, H, W] and pairs (and, in the
    fixed-budget mode, contexts; with ``settings.target_ci`` each model gets the contexts its precision needs, see
    `InteractionSettings`). With ``cache`` (a CSV path) finished (model, image)
    results are kept across runs; a cache from an older moga_lab without the debiased columns is recomputed, one
    from another design is an error (`check_interaction_cache`). With ``wall_times`` (a study folder) each
    (model, image) computed adds its seconds to the ``interaction`` total there (`add_wall_time`). The ``pixel-mean``
    baseline is each pixel's mean over the fit checkpoints' training split, or over the images of ``data_dir`` (seen
    through ``eval_transform``) for released weights on an ImageFolder, which has no training split."""
    from tqdm.auto import tqdm
    from moga_lab.utils.atomic import atomic_write_csv
    check_interaction_cache(cache, settings)
    done = pd.read_csv(cache) if cache and os.path.isfile(cache) else None
    if done is not None and 'I2' not in done.columns:
        done = None  # written before the debiased statistic existed
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
            start = time.perf_counter()
            runner = runner or evaluation_model(m.model, settings)  # fused once per model
            frames.append(interaction_strength(runner, images[k:k + 1], labels[k:k + 1], settings, model_name=m.name,
                                               image_ids=[image_id], pixel_mean=pixel_mean, mean=m.mean or (0.0,),
                                               std=m.std or (1.0,)))
            if cache:
                atomic_write_csv(cache, pd.concat(frames, ignore_index=True))
            if wall_times:
                add_wall_time(wall_times, 'interaction', time.perf_counter() - start)
            bar.update(1)
    bar.close()
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame.model.isin([m.name for m in models]) & frame.image_id.isin(list(ids))]


def trained_on(results: Dict[str, Any]) -> str:
    """Who trained a run, from its ``results.yaml``: e.g. ``AMD EPYC, 2 cores, torch 2.14.1 (1 thread)``."""
    threads = results.get('threads', '?')
    return f"{results.get('machine', 'not recorded')} ({threads} thread{'' if threads == 1 else 's'})"


def provenance(script: str, argv: Sequence[str]) -> str:
    """The exact command and the machine that wrote the report, as a study report states them (one Markdown line).
    Which machine trained each run is `trained_on`'s, from the run's own ``results.yaml``: a report is often
    written on another machine than the one that trained (a study can span machines).

    Args:
        script: the script's path as a user types it, e.g. ``experiments/ablate.py``.
        argv: its arguments (``sys.argv[1:]``).
    """
    return f'Command: `python {script} {shlex.join(argv)}`. Report written on: {describe_machine()}.'


def publish_artefacts(out: str, dest: str) -> List[str]:
    """Copy a study's tables, report and figures (the files at the top of ``out`` ending in ``ARTEFACT_SUFFIXES``)
    into ``dest``, e.g. ``docs/studies/compare``, each file written atomically; checkpoints and run folders are
    never copied.

    Args:
        out: the study's output folder.
        dest: where the artefacts go (created if missing).

    Returns:
        The names copied, sorted.

    Raises:
        FileNotFoundError: ``out`` holds no artefact.
    """
    names = sorted(n for n in os.listdir(out) if n.endswith(ARTEFACT_SUFFIXES) and os.path.isfile(os.path.join(out, n)))
    if not names:
        raise FileNotFoundError(f'{out} holds no study artefact ({", ".join("*" + s for s in ARTEFACT_SUFFIXES)})')
    os.makedirs(dest, exist_ok=True)
    for name in names:
        tmp = os.path.join(dest, f'.{name}.tmp')
        shutil.copyfile(os.path.join(out, name), tmp)
        os.replace(tmp, os.path.join(dest, name))
    return names


def wall_time(out: str, key: str) -> float:
    """The running total ``key`` (e.g. ``interaction``) in ``out/wall_times.yaml`` in seconds; 0 when none was added."""
    return float(_wall_totals(os.path.join(out, 'wall_times.yaml')).get(f'{key}_seconds', 0.0))


def _wall_totals(path: str) -> Dict[str, float]:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def add_wall_time(out: str, key: str, seconds: float) -> float:
    """Add ``seconds`` to the running total ``key`` in ``out/wall_times.yaml`` (written atomically) and return the
    total: a study stopped and resumed reports the time of all its runs, not of the last one.

    Args:
        out: the study's output folder.
        key: what was timed, e.g. ``interaction``.
        seconds: the time this run spent on it.
    """
    from moga_lab.utils.atomic import atomic_write_text
    path = os.path.join(out, 'wall_times.yaml')
    os.makedirs(out, exist_ok=True)
    # read-add-write under an exclusive lock: two processes of one study (e.g. ablate.py on disjoint --rows) adding
    # at the same moment must not lose either addition
    with FileLock(path + '.lock'):
        totals = _wall_totals(path)
        totals[f'{key}_seconds'] = round(float(totals.get(f'{key}_seconds', 0.0)) + float(seconds), 3)  # to the ms: added per image
        atomic_write_text(path, yaml.safe_dump(totals, sort_keys=True))
    return totals[f'{key}_seconds']
