"""Is a study's budget close to convergence? Test top-1 after the budget against after twice the budget.

    python analysis/convergence.py --budget runs/ablation28/accuracy.csv:full --twice runs/compare28/accuracy.csv:moganet_xtiny \
        --labels "3 epochs" "6 epochs" [--tolerance 1.0] [--out docs/studies/ablation/convergence.md]

Each side is an ``accuracy.csv`` of a study (first column the model or row name, a ``seed`` column, test top-1 in
percent in a column whose name contains ``top1``) and the name of the line(s) to take. Prints and writes (``--out``,
Markdown, plus the same table as CSV next to it) each side's mean and spread over seeds, the gain from doubling the
budget (paired by seed where both sides have the seed) and whether the budget is within ``--tolerance`` points of
the longer run. The spread over seeds says how much of the gain is noise: with one seed on a side, the verdict rests
on the other side's spread alone, and the report says so.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd


from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text


def read_side(spec: str) -> pd.DataFrame:
    """``FILE:NAME`` -> the lines of FILE whose first column is NAME, as (seed, top1); ValueError naming what is
    wrong."""
    path, sep, name = spec.rpartition(':')
    if not sep or not path or not name:
        raise ValueError(f'{spec!r} is not accepted; accepted: FILE:NAME, e.g. runs/ablation/accuracy.csv:full')
    if not os.path.isfile(path):
        raise ValueError(f'{path}: no such file (an accuracy.csv written by a study)')
    table = pd.read_csv(path)
    top1 = [c for c in table.columns if 'top1' in c]
    if 'seed' not in table.columns or not top1:
        raise ValueError(f'{path}: needs a seed column and a column whose name contains top1; has {list(table.columns)}')
    lines = table[table.iloc[:, 0].astype(str) == name]
    if lines.empty:
        raise ValueError(f'{path}: no line named {name!r}; names there: {", ".join(map(str, table.iloc[:, 0].unique()))}')
    return pd.DataFrame({'seed': lines.seed.astype(int).values, 'top1': lines[top1[0]].astype(float).values})


def convergence_table(budget: pd.DataFrame, twice: pd.DataFrame, labels, tolerance: float):
    """(table, verdict): one line per side (mean, sample std, seeds) and the gain from doubling the budget."""
    rows = []
    for label, side in zip(labels, (budget, twice)):
        rows.append(dict(budget=label, seeds=' '.join(map(str, side.seed)), n=len(side), top1_mean=side.top1.mean(),
                         top1_std=side.top1.std(ddof=1) if len(side) > 1 else np.nan))
    table = pd.DataFrame(rows)
    gain = twice.top1.mean() - budget.top1.mean()
    paired = budget.merge(twice, on='seed', suffixes=('_budget', '_twice'))
    paired_gain = (paired.top1_twice - paired.top1_budget) if len(paired) else pd.Series(dtype=float)
    spread = np.nanmax(table.top1_std.values) if table.top1_std.notna().any() else np.nan
    within = gain <= tolerance
    verdict = (f'Doubling the budget ({labels[0]} -> {labels[1]}) changes test top-1 by {gain:+.2f} points (means)'
               + (f'; paired by seed ({", ".join(map(str, paired.seed))}): '
                  f'{", ".join(f"{g:+.2f}" for g in paired_gain)}' if len(paired) else '')
               + f'. The budget is {"within" if within else "NOT within"} {tolerance:g} point of the longer run')
    if spread == spread:
        verdict += f'; the spread over seeds is {spread:.2f} points (sample std)'
    if min(len(budget), len(twice)) == 1:
        verdict += ('; one side has a single seed, so its seed-to-seed noise is known only from the other side')
    return table, verdict + '.'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--budget', required=True, metavar='FILE:NAME', help='accuracy.csv and line name at the budget')
    p.add_argument('--twice', required=True, metavar='FILE:NAME', help='the same model trained for twice the budget')
    p.add_argument('--labels', nargs=2, default=('budget', 'twice the budget'), metavar=('BUDGET', 'TWICE'))
    p.add_argument('--tolerance', type=float, default=1.0, help='points of top-1 (default 1.0, the issue\'s "~1 point")')
    p.add_argument('--out', help='write the Markdown report here (and the table as .csv beside it)')
    args = p.parse_args(argv)
    try:
        budget, twice = read_side(args.budget), read_side(args.twice)
    except ValueError as error:
        p.error(str(error))
    table, verdict = convergence_table(budget, twice, args.labels, args.tolerance)
    text = (f'# Convergence of the budget\n\nTest top-1 (%, 10k Fashion-MNIST test images) of `{args.budget}` against '
            f'`{args.twice}`.\n\n{table.to_markdown(index=False, floatfmt=".2f")}\n\n{verdict}\n')
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_text(args.out, text)
        atomic_write_csv(os.path.splitext(args.out)[0] + '.csv', table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
