"""Hyper-parameter choice on the validation split only: a learning-rate sweep whose report holds no test number.

Each learning rate trains with everything else of the base configuration, ``fit(..., test=False)``: the test split is
never set up, so it cannot inform the choice. The best validation top-1 (over the run's validations) picks the
learning rate; the chosen model is then trained and tested once, by the study that uses it.
"""
import copy
import math
import os
from typing import Callable, Optional, Sequence, Sized, Union, cast

import pandas as pd
import yaml

from moga_lab.utils.atomic import atomic_write_csv
from moga_lab.training.config import RunConfig

__all__ = ['chosen_lr', 'lr_sweep', 'SWEEP_COLUMNS']

SWEEP_COLUMNS = ['model', 'lr', 'val_top1', 'val_images', 'epochs', 'seed', 'chosen']


def lr_sweep(base: RunConfig, lrs: Sequence[float], out: str,
             on_run: Optional[Callable[[float, float], None]] = None) -> pd.DataFrame:
    """Train ``base`` at each learning rate and choose the one with the best validation top-1.

    Runs resume: a learning rate whose run folder (``out/lr<LR>``) holds ``results.yaml`` is not trained again, one
    with ``last.ckpt`` continues. ``out/sweep.csv`` is rewritten atomically after every run.

    Args:
        base: the run configuration; its ``optim.lr`` and ``trainer.run_dir`` are replaced per learning rate. Its
            ``data.val_size`` must be > 0 (the choice is made on the validation split).
        lrs: the learning rates to try (> 0).
        out: the folder of the runs and of ``sweep.csv``.
        on_run: called with (lr, validation top-1 in %) after each run.

    Returns:
        Columns `SWEEP_COLUMNS`; ``chosen`` marks the best validation top-1 (a tie: the smaller learning rate).

    Raises:
        ValueError: no learning rate, one that is not > 0, or no validation split.
    """
    from moga_lab.training.run import fit, prepare
    if not lrs:
        raise ValueError('no learning rate to sweep; pass one or more values > 0 (e.g. 1e-3 2e-3 4e-3)')
    bad = [lr for lr in lrs if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr))]
    if bad:
        raise ValueError(f'learning rates {bad} are not accepted; accepted: numbers > 0')
    if base.data.val_size is not None and base.data.val_size < 1:
        raise ValueError(f'val_size={base.data.val_size}: a sweep chooses on the validation split; accepted: >= 1')
    rows = []
    for lr in lrs:
        cfg = copy.deepcopy(base)
        cfg.optim.lr = float(lr)
        cfg.trainer.run_dir = os.path.join(out, f'lr{lr:g}')
        results = os.path.join(cfg.trainer.run_dir, 'results.yaml')
        if not os.path.isfile(results):
            datamodule, module = prepare(cfg)
            fit(cfg, resume=os.path.isfile(os.path.join(cfg.trainer.run_dir, 'last.ckpt')), test=False,
                prepared=(datamodule, module))
            val_images = len(cast(Sized, datamodule.val_set)) if datamodule.val_set is not None else None
        else:
            val_images = None
        with open(results) as f:
            summary = yaml.safe_load(f)
        if 'val/acc1_best' not in summary:
            raise ValueError(f'{results} holds no validation top-1 (a run without a validation split?)')
        top1 = round(100 * float(summary['val/acc1_best']), 2)
        rows.append(dict(model=cfg.model.name, lr=float(lr), val_top1=top1,
                         val_images=val_images, epochs=cfg.trainer.epochs, seed=cfg.trainer.seed, chosen=False))
        if on_run is not None:
            on_run(float(lr), top1)
        table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
        best = table.sort_values(['val_top1', 'lr'], ascending=[False, True]).index[0]
        table['chosen'] = table.index == best
        os.makedirs(out, exist_ok=True)
        atomic_write_csv(os.path.join(out, 'sweep.csv'), table)
    return table


def chosen_lr(sweep_csv: Union[str, Sequence[str]], model: str) -> float:
    """The learning rate with the best validation top-1 in ``model``'s sweeps (`lr_sweep`'s ``sweep.csv`` files),
    so that a later training uses the validation split's choice without a number typed by hand. Several files are
    one grid (e.g. a sweep widened later): the choice is made over all their rows, by `lr_sweep`'s rule (the best
    validation top-1; a tie: the smaller learning rate).

    Args:
        sweep_csv: one ``sweep.csv``, or several of the same epochs and seed; a table of several models (a study's
            published ``sweep.csv``) gives its rows of ``model``.
        model: the model the training is for; each file must hold a sweep of it.

    Raises:
        ValueError: no such file, no sweep of ``model`` in a file, sweeps of different budgets, or no row.
    """
    paths = [sweep_csv] if isinstance(sweep_csv, str) else list(sweep_csv)
    tables = []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f'--lr-from {path}: no such file (a sweep.csv written by moga-sweep)')
        table = pd.read_csv(path)
        missing = sorted(set(SWEEP_COLUMNS) - set(table.columns))
        if missing or table.empty:
            raise ValueError(f'--lr-from {path}: not a sweep table (' + (f'no {missing})' if missing else 'no rows)'))
        if model not in set(table.model):  # a published sweep table holds several models: the rows of ``model``
            raise ValueError(f'--lr-from {path}: no sweep of {model} (it has {", ".join(sorted(set(table.model)))})')
        tables.append(table[table.model == model])
    table = pd.concat(tables, ignore_index=True)
    for column in ('epochs', 'seed'):
        if table[column].nunique() > 1:
            raise ValueError(f'--lr-from {" ".join(paths)}: sweeps of different {column} '
                             f'({sorted(table[column].unique().tolist())}); accepted: one budget')
    best = table.sort_values(['val_top1', 'lr'], ascending=[False, True]).iloc[0]
    return float(best.lr)
