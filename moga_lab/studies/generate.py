"""Study files for the two experiments of the paper, generated: a comparison of models (`comparison_study`) and an
ablation grid of MogaNet switches (`ablation_study`). Both return the study file's content for the runner
(`moga_lab.studies.runner`): units of the package's own commands (``moga-sweep``, ``moga-fit``, ``moga-interaction``,
``moga-gradcam``), what ``publish`` gathers and the report it renders; `write_study` writes one. The studies run,
resume and publish through ``moga-study`` alone."""
import os
import shlex
from typing import Any, Dict, List, Optional, Sequence

import yaml

from moga_lab.studies.spec import StudyError
from moga_lab.utils.atomic import atomic_write_text

__all__ = ['comparison_study', 'ablation_study', 'row_flags', 'write_study', 'write_and_run', 'ROW_SWITCHES']

ROW_SWITCHES = {'gating': '--no-gating', 'feat_decompose': '--no-fd', 'channel_aggregation': '--no-ca',
                'attn_force_fp32': '--attn-force-fp32', 'gate_act': '--gate-act', 'dilations': '--dilations',
                'channel_split': '--channel-split', 'drop_path': '--drop-path'}
"""The MogaNet switches an ablation row may set (`moga_lab.training.ModelConfig` names) and ``moga-fit``'s flag for
each."""
_RESULTS = dict(file='results.yaml', columns={'test_top1': 'test/acc1', 'test_top5': 'test/acc5',
                                              'val_top1': 'val/acc1_best', 'lr': 'lr'},
                percent=['test_top1', 'test_top5', 'val_top1'])


def _cmd(tokens: Sequence[str]) -> str:
    """A command line for the study file: tokens joined by spaces, quoted only where they hold a space (the runner
    splits it with shlex after filling in ``{dir}``, ``{out}`` and the matrix values)."""
    return ' '.join(shlex.quote(t) if any(c.isspace() for c in t) else t for t in tokens)


def row_flags(row: str, switches: Dict[str, Any]) -> List[str]:
    """``moga-fit``'s flags for an ablation row's switches, or a StudyError naming a switch it does not know.

    Args:
        row: the row's name (for the message).
        switches: ``{switch: value}``, e.g. ``{'gating': False, 'channel_split': [1, 0, 0]}``.
    """
    flags: List[str] = []
    for key, value in (switches or {}).items():
        if key not in ROW_SWITCHES:
            raise StudyError(f'row {row}: switch {key!r} is not accepted; accepted: {", ".join(ROW_SWITCHES)}')
        flag = ROW_SWITCHES[key]
        if key in ('gating', 'feat_decompose', 'channel_aggregation'):
            if value is False:
                flags.append(flag)
        elif key == 'attn_force_fp32':
            if value:
                flags.append(flag)
        elif key in ('dilations', 'channel_split'):
            sep = ',' if key == 'dilations' else ':'
            flags += [flag, sep.join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)]
        else:
            flags += [flag, str(value)]
    return flags


def _data(data: Optional[str], data_dir: Optional[str]) -> List[str]:
    return (['--data', data] if data else []) + (['--data-dir', data_dir] if data_dir else [])


def _interaction(num_images: int, pairs: int, contexts: int, design: str, grid: Optional[int],
                 ratios: Optional[Sequence[float]]) -> List[str]:
    return (['--num-images', str(num_images), '--seed', '0', '--pairs', str(pairs), '--contexts', str(contexts),
             '--design', design] + (['--grid', str(grid)] if grid else [])
            + (['--ratios', ','.join(f'{r:g}' for r in ratios)] if ratios else []))


def _training(epochs: int, batch_size: int, limit_train_batches: float, drop_path: float,
              tracking_uri: Optional[str]) -> List[str]:
    logger = ['--logger', 'csv,mlflow', '--tracking-uri', tracking_uri] if tracking_uri else ['--logger', 'csv']
    return ['--epochs', str(epochs), '--limit-train-batches', str(limit_train_batches), '--batch-size',
            str(batch_size), '--drop-path', f'{drop_path:g}', '--seed', '{seed}', *logger, '--no-progress']


def _tracked(tracking_uri: Optional[str]) -> List[str]:
    return ['--tracking-uri', tracking_uri] if tracking_uri else []


def comparison_study(models: Sequence[str], seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int = 2,
                     batch_size: int = 128, lrs: Sequence[float] = (1e-3, 2e-3, 4e-3), limit_train_batches: float = 1.0,
                     drop_path: float = 0.0, num_images: int = 32, pairs: int = 20, contexts: int = 8,
                     design: str = 'fixed', grid: Optional[int] = None, ratios: Optional[Sequence[float]] = None,
                     cam_images: int = 256, data: Optional[str] = None, data_dir: Optional[str] = None,
                     name: str = 'compare', out: str = 'runs/studies/compare', registry: Optional[str] = None,
                     title: Optional[str] = None, tracking_uri: Optional[str] = None) -> Dict[str, Any]:
    """The study file of a comparison: each model's learning rate chosen on the validation split over ``lrs``
    (``moga-sweep``, one epoch, seed 0; a single rate skips the sweep), trained on every seed, its interaction curves
    on the same images, pairs and contexts for every model and seed, Grad-CAM of the first seed's checkpoints; published
    as ``<name>/`` (interaction_seeds.csv, accuracy.csv, configs.csv, gradcam.csv, sweep.csv) with its report.

    Args:
        models: timm names (``moganet_xtiny``, ``convnext_atto``, ``swin_femto``, ...); the first is the reference.
        seeds: training seeds.
        epochs: training epochs.
        batch_size: training batch size.
        lrs: the learning rates the sweep chooses from (one: that rate, no sweep).
        limit_train_batches: fraction (<= 1) or number of training batches per epoch.
        drop_path: stochastic depth rate.
        num_images: test images of the interaction curves.
        pairs: pairs per image.
        contexts: contexts per pair and order.
        design: the interaction design (``fixed`` or ``shared``).
        grid: the patch grid (None: the default at the image size).
        ratios: order ratios (None: the authors' 13).
        cam_images: test images of the Grad-CAM mass on the object.
        data: the data set (None: Fashion-MNIST).
        data_dir: its folder.
        name: the study's name and its published folder.
        out: the units' root folder.
        registry: a claims registry the published tables are evaluated against (None: none).
        title: the report's title.
        tracking_uri: an MLflow store every training logs to and every curve records to (None: CSV logs only).

    Returns:
        The study file's content (write it with `write_study`).
    """
    if len(models) < 2:
        raise StudyError(f'a comparison needs 2 or more models; got {list(models)}')
    sweep = len(lrs) > 1
    units: List[Dict[str, Any]] = []
    matrix = {'model': list(models)}
    if sweep:
        units.append(dict(name='sweep-{model}', matrix=matrix, command=_cmd(
            ['moga-sweep', '--model', '{model}', '--lrs', *[f'{lr:g}' for lr in lrs], '--epochs', '1',
             '--limit-train-batches', str(limit_train_batches), '--batch-size', str(batch_size), '--drop-path',
             f'{drop_path:g}', '--seed', '0', '--logger', 'csv', '--no-progress', *_data(data, data_dir), '--out',
             '{dir}'])))
    lr = ['--lr-from', '{out}/sweep-{model}/sweep.csv'] if sweep else ['--lr', f'{lrs[0]:g}']
    units.append(dict(name='fit-{model}-s{seed}', matrix=dict(matrix, seed=list(seeds)),
                      after=['sweep-{model}'] if sweep else [], resume={'if_exists': 'last.ckpt', 'args': '--resume'},
                      command=_cmd(['moga-fit', '--model', '{model}', *lr,
                                    *_training(epochs, batch_size, limit_train_batches, drop_path, tracking_uri),
                                    *_data(data, data_dir), '--run-dir', '{dir}'])))
    units.append(dict(name='curves-{model}-s{seed}', matrix=dict(matrix, seed=list(seeds)),
                      after=['fit-{model}-s{seed}'], command=_cmd(
                          ['moga-interaction', '--checkpoint', '{out}/fit-{model}-s{seed}/best.ckpt', '--label',
                           '{model}', *_interaction(num_images, pairs, contexts, design, grid, ratios),
                           *_tracked(tracking_uri), '--out', '{dir}'])))
    first = list(seeds)[0]
    cam = ['moga-gradcam']
    for m in models:
        cam += ['--checkpoint', f'{{out}}/fit-{m}-s{first}/best.ckpt']
    for m in models:
        cam += ['--label', m]
    units.append(dict(name='gradcam', after=[f'fit-{m}-s{first}' for m in models], command=_cmd(
        cam + ['--num-images', str(cam_images), '--seed', '1', '--garment-threshold', '0.1', '--out', '{dir}'])))
    publish: Dict[str, Any] = {f'{name}/interaction_seeds.csv': {'from': 'curves-*', 'file': 'interaction.csv'},
                               f'{name}/accuracy.csv': {'from': 'fit-*', **_RESULTS},
                               f'{name}/configs.csv': {'from': 'fit-*', 'file': 'config.yaml'},
                               f'{name}/gradcam.csv': {'from': 'gradcam', 'file': 'gradcam.csv'},
                               f'{name}/gradcam_grid.png': {'from': 'gradcam', 'file': 'gradcam_grid.png'}}
    if sweep:
        publish[f'{name}/sweep.csv'] = {'from': 'sweep-*', 'file': 'sweep.csv'}
    recipe = (f'{", ".join(models)}: {epochs} epoch(s), batch {batch_size}, {len(seeds)} training seed(s), '
              + (f'the learning rate chosen on the validation split over {", ".join(f"{lr:g}" for lr in lrs)}' if sweep
                 else f'learning rate {lrs[0]:g}')
              + f'; interaction curves on the same {num_images} test images, {pairs} pairs and contexts for every '
              f'model and seed ({design} design, {contexts} contexts per pair and order); Grad-CAM of the seed-{first} '
              f'checkpoints on {cam_images} test images.')
    study: Dict[str, Any] = dict(name=name, out=out, units=units, publish=publish,
                                 reports={name: dict(title=title or f'{" vs ".join(models)}', reference=models[0],
                                                     design=recipe)})
    if registry:
        study['claims'] = {'registry': registry}
    return study


def ablation_study(rows: Dict[str, Dict[str, Any]], model: str = 'moganet_xtiny', seeds: Sequence[int] = (0, 1),
                   epochs: int = 2, batch_size: int = 64, lr: float = 2e-3, lr_from: Optional[str] = None,
                   limit_train_batches: float = 1.0, drop_path: float = 0.0, num_images: int = 32, pairs: int = 20,
                   contexts: int = 8, design: str = 'fixed', grid: Optional[int] = None,
                   ratios: Optional[Sequence[float]] = None, data: Optional[str] = None,
                   data_dir: Optional[str] = None, name: str = 'ablation', out: str = 'runs/studies/ablation',
                   registry: Optional[str] = None, title: Optional[str] = None,
                   tracking_uri: Optional[str] = None) -> Dict[str, Any]:
    """The study file of an ablation grid: every row (the full model changed by its switches, `row_flags`) trained on
    every seed at one recipe, its interaction curves on the same images, pairs and contexts; published as
    ``<name>/`` (interaction_seeds.csv and accuracy.csv with the row in the ``model`` column, configs.csv) with its
    report, the row ``full`` (else the first) the reference.

    Args:
        rows: ``{row: {switch: value}}`` (``{}`` for the full model).
        model: the MogaNet variant (a timm name).
        seeds: training seeds.
        epochs: training epochs.
        batch_size: training batch size.
        lr: the learning rate (unless ``lr_from``).
        lr_from: a sweep table whose choice for ``model`` every row takes (``moga-fit --lr-from``).
        limit_train_batches: fraction (<= 1) or number of training batches per epoch.
        drop_path: stochastic depth rate.
        num_images: test images of the interaction curves.
        pairs: pairs per image.
        contexts: contexts per pair and order.
        design: the interaction design (``fixed`` or ``shared``).
        grid: the patch grid (None: the default at the image size).
        ratios: order ratios (None: the authors' 13).
        data: the data set (None: Fashion-MNIST).
        data_dir: its folder.
        name: the study's name and its published folder.
        out: the units' root folder.
        registry: a claims registry (None: none).
        title: the report's title.
        tracking_uri: an MLflow store every training logs to and every curve records to (None: CSV logs only).

    Returns:
        The study file's content.
    """
    if not rows:
        raise StudyError('an ablation needs rows; accepted: {row: {switch: value}}, {} for the full model')
    units: List[Dict[str, Any]] = []
    lr_args = ['--lr-from', lr_from] if lr_from else ['--lr', f'{lr:g}']
    for row, switches in rows.items():
        units.append(dict(name=f'fit-{row}-s{{seed}}', matrix={'model': [row], 'seed': list(seeds)},
                          resume={'if_exists': 'last.ckpt', 'args': '--resume'}, command=_cmd(
                              ['moga-fit', '--model', model, *row_flags(row, switches), *lr_args,
                               *_training(epochs, batch_size, limit_train_batches, drop_path, tracking_uri), *_data(data, data_dir),
                               '--run-dir', '{dir}'])))
    units.append(dict(name='curves-{model}-s{seed}', matrix={'model': list(rows), 'seed': list(seeds)},
                      after=['fit-{model}-s{seed}'], command=_cmd(
                          ['moga-interaction', '--checkpoint', '{out}/fit-{model}-s{seed}/best.ckpt', '--label',
                           '{model}', *_interaction(num_images, pairs, contexts, design, grid, ratios),
                           *_tracked(tracking_uri), '--out', '{dir}'])))
    reference = 'full' if 'full' in rows else next(iter(rows))
    recipe = (f'{model} rows {", ".join(rows)}: {epochs} epoch(s), batch {batch_size}, {len(seeds)} training seed(s), '
              + (f'the learning rate {model}\'s sweep chose ({lr_from})' if lr_from else f'learning rate {lr:g}')
              + f'; interaction curves on the same {num_images} test images, {pairs} pairs and contexts for every row '
              f'and seed ({design} design, {contexts} contexts per pair and order).')
    study: Dict[str, Any] = dict(
        name=name, out=out, units=units,
        publish={f'{name}/interaction_seeds.csv': {'from': 'curves-*', 'file': 'interaction.csv'},
                 f'{name}/accuracy.csv': {'from': 'fit-*', **_RESULTS},
                 f'{name}/configs.csv': {'from': 'fit-*', 'file': 'config.yaml'}},
        reports={name: dict(title=title or f'{model} ablations', reference=reference, noun='row', design=recipe)})
    if registry:
        study['claims'] = {'registry': registry}
    return study


def write_study(study: Dict[str, Any], path: str) -> str:
    """Write a study file (YAML, atomically) and check that the runner reads it back.

    Args:
        study: from `comparison_study` or `ablation_study`.
        path: the file.

    Returns:
        ``path``.
    """
    from moga_lab.studies.spec import load_study
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    header = ('# generated by moga-compare / moga-ablate (moga_lab.studies.generate); run it with\n'
              f'#   moga-study run {path} [--until HH:MM]    and    moga-study publish {path} --to docs/studies\n')
    class Dumper(yaml.SafeDumper):  # every list written out in full (no &anchors for the matrices a study repeats)
        def ignore_aliases(self, data):
            return True
    atomic_write_text(path, header + yaml.dump(study, Dumper=Dumper, sort_keys=False, width=110))
    load_study(path)
    return path


def write_and_run(study: Dict[str, Any], path: str, run: bool = False) -> int:
    """What ``moga-compare`` and ``moga-ablate`` do with the study they generate: write it (`write_study`), say how to
    run and publish it, and with ``run`` start it here (`moga_lab.studies.runner.run_study`).

    Args:
        study: the study file's contents, as `comparison_study` or `ablation_study` return them.
        path: where the ``*.yaml`` is written (atomically).
        run: start the study's units here after writing it.

    Returns:
        The command's exit status: 1 when a unit failed or the run stopped early, else 0.
    """
    from moga_lab.studies.runner import load_study, run_study
    write_study(study, path)
    print(f'wrote {path} ({len(load_study(path).units)} units); run it with: moga-study run {path} [--until HH:MM], '
          f'then: moga-study publish {path} --to docs/studies')
    if not run:
        return 0
    result = run_study(load_study(path))
    return 1 if result['failed'] or 'stopped' in result else 0
