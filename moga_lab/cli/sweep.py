"""``python -m moga_lab.cli.sweep --variant xtiny --lrs 1e-3 2e-3 4e-3 --out runs/sweep``: choose the learning rate on the
validation split (5000 of the 60k Fashion-MNIST training images by default). The report holds validation top-1 only:
the test split is not read.

The other options are ``moga_lab.cli.fit``'s (model, data, recipe); ``--model NAME`` sweeps a ConvNeXt or Swin baseline.
"""
import sys
from typing import List, Optional

from moga_lab.cli.common import fail, user_errors


def build_parser():
    """``moga-fit``'s parser (model, data, recipe) with the sweep's ``--lrs`` and ``--out``."""
    from moga_lab.cli import fit as fit_cli
    parser = fit_cli.build_parser()
    parser.prog = 'python -m moga_lab.cli.sweep'
    parser.description = __doc__
    parser.add_argument('--lrs', type=float, nargs='+', required=True, metavar='LR',
                        help='the learning rates to try (chosen by validation top-1)')
    parser.add_argument('--out', required=True, help='folder of the runs and of sweep.csv')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse, sweep, print the validation table and the choice."""
    from moga_lab.cli import fit as fit_cli
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from moga_lab.training.sweep import lr_sweep
        args.run_dir, args.resume = args.out, False
        cfg = fit_cli.resolve_config(args)
        table = lr_sweep(cfg, args.lrs, args.out,
                         on_run=lambda lr, top1: print(f'lr {lr:g}: validation top-1 {top1:.2f} %', flush=True))
    except user_errors() as error:
        fail(parser.prog, str(error))
    chosen = table[table.chosen].iloc[0]
    print(table.drop(columns='chosen').to_string(index=False))
    print(f'chosen on the validation split: lr {chosen.lr:g} (validation top-1 {chosen.val_top1:.2f} %); '
          f'wrote {args.out}/sweep.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())
