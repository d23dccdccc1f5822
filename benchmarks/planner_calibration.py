"""The planner's expected standard error against the spread measured over repeated runs.

    python benchmarks/planner_calibration.py --games local skewed cnn gated-cnn \\
        --measured runs/bench/design_cost_games/design_cost.csv --out benchmarks/results/planner_calibration.md

For each target and shared plan of ``benchmarks/design_cost.py`` (the same pilot and plans: same seed, same budgets),
the plan's expected s.e. of the image's RMS middle share (`moga_lab.analysis.planner`), split into its two terms:
the pairs' term A / P (A, the variance over the pilot's pairs of a pair's share influence) and the Monte-Carlo term
of the contexts; beside it the same with A less the pilot's own Monte-Carlo noise (each pair's plug-in variance of
its U at the pilot's 4 contexts, floored at 0), and the s.d. measured over repeated runs with pairs and contexts drawn
afresh (``design_cost.csv``'s ``sd_share_rms``). Ratio = expected / measured (1 = calibrated).
"""
import argparse
import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import torch

from moga_lab.analysis import planner
from moga_lab.utils.atomic import atomic_write_text
from moga_lab.utils.runtime import describe_machine


def _design_cost():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'design_cost.py')
    spec = importlib.util.spec_from_file_location('design_cost', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--games', nargs='*', default=['local', 'skewed', 'cnn', 'gated-cnn'])
    p.add_argument('--checkpoint', action='append', default=[], help='a trained model (repeatable)')
    p.add_argument('--label', action='append', help='a name per --checkpoint')
    p.add_argument('--images', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--measured', action='append', required=True, help="design_cost.py's design_cost.csv (repeatable)")
    p.add_argument('--out', help='write the table (markdown) here')
    args = p.parse_args(argv)
    dc = _design_cost()
    measured = pd.concat([pd.read_csv(f) for f in args.measured]).set_index(['target', 'design'])
    rows = []
    for target, (games, grid) in dc._targets(args).items():
        n = grid * grid
        orders = dc.order_grid(n, dc.ORDER_RATIOS)
        g = torch.Generator().manual_seed(10_000 + args.seed)           # as design_cost._plans
        pairs = [dc.sample_pairs(grid, 40, generator=g)]
        comp = planner.run_pilot(games[:1], n, pairs, orders, ratios=dc.ORDER_RATIOS, generator=g)
        a_raw, noise = comp.pair_share_var['rms'], comp.pair_share_noise
        ratio = np.asarray(dc.ORDER_RATIOS)
        inner = (ratio >= 0.2) & (ratio <= 0.6)
        authors = 4 * dc.AUTHORS['pairs'] * dc.AUTHORS['contexts'] * (len(dc.ORDER_RATIOS) - 2) + 4 * dc.AUTHORS['pairs']
        for div in (4, 10):
            design = f'shared/{div}'
            plan = planner.plan_shared(comp, n, grid, budget=authors / div, ratios=dc.ORDER_RATIOS)
            P = plan.num_pairs
            # (as plan_shared scales the pilot's correlation from shared draws to the plan's group size)
            rho = comp.rho * (min(plan.share, P) - 1) / max(min(comp.share or planner.DEFAULT_SHARE, P) - 1, 1)
            var, _, _ = planner._variance(comp, 'rms', P, np.asarray(plan.contexts), rho, inner)
            assert abs(np.sqrt(var) - plan.share_se) < 1e-6 * max(plan.share_se, 1e-12), (np.sqrt(var), plan.share_se)
            mc = max(var - a_raw / P, 0.0)
            corrected = np.sqrt(max(a_raw - noise, 0.0) / P + mc)
            sd = float(measured.loc[(target, design), 'sd_share_rms']) if (target, design) in measured.index else np.nan
            rows.append({'target': target, 'design': design, 'pairs': P, 'expected s.e.': round(float(np.sqrt(var)), 4),
                         'pairs term': round(float(np.sqrt(a_raw / P)), 4), 'contexts term': round(float(np.sqrt(mc)), 4),
                         'A less pilot noise': round(float(corrected), 4), 'measured s.d.': round(sd, 4),
                         'expected / measured': round(float(np.sqrt(var)) / sd, 2),
                         'corrected / measured': round(float(corrected) / sd, 2),
                         'pilot noise / A': round(noise / a_raw, 2)})
            print(rows[-1], file=sys.stderr, flush=True)
    text = (f'Measured on {describe_machine()}; the expected values are the planner\'s, from its pilot on the target\'s '
            'first image; the measured s.d. is over repeated runs with pairs and contexts drawn afresh '
            '(`benchmarks/design_cost.py`). "pilot noise / A": the share of the pairs\' term that is the pilot\'s own '
            'Monte-Carlo noise (at 1 or above, the pairs\' spread cannot be told from noise at 4 contexts).\n\n'
            + pd.DataFrame(rows).to_markdown(index=False) + '\n')
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
