"""The interaction design's options, one set for every command that computes interaction curves: ``--design``,
``--share``, and the planner's ``--budget`` / ``--target-share-se`` (see `moga_lab.analysis.planner`), and the
statistic shown first (``--statistic auto``)."""
import argparse
import os
import sys
from typing import Optional, Sequence

__all__ = ['add_design_arguments', 'apply_design_arguments', 'plan_from_arguments', 'chosen_statistic',
           'BIAS_SHARE_LIMIT']

BIAS_SHARE_LIMIT = 0.10
"""Mean |I| is shown first only where its bias bound is within this share of its value in the middle orders."""


def _share(text: str) -> Optional[int]:
    if text == 'all':  # one group of every pair: any number at least the pairs' count
        return 1_000_000
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not accepted; accepted: an integer >= 1, or all')
    return value


def add_design_arguments(p: argparse.ArgumentParser) -> None:
    """``--design``, ``--share``, ``--budget``, ``--target-share-se``, ``--pilot-images`` on a command's parser.

    Args:
        p: the parser.
    """
    from moga_lab.analysis.estimate import DESIGNS
    g = p.add_argument_group('design')
    g.add_argument('--design', choices=DESIGNS, default=None,
                   help="fixed: the authors' (--contexts of its own per pair and order); shared: one drawn context "
                        'serves every pair that can use it (up to --share pairs); two-phase: the precision mode '
                        '(--target-ci); default: shared when --budget or --target-share-se is given, two-phase with '
                        '--target-ci, else fixed')
    g.add_argument('--share', type=_share, default=None, metavar='N|all',
                   help='shared design: pairs per group that share draws (default 16; much larger groups leave the lowest orders '
                        'too few distinct draws for their intervals)')
    g.add_argument('--budget', type=float, metavar='FORWARDS',
                   help='shared design: plan pairs and contexts per order for the most precise middle share within '
                        'this many forward passes per image, from a pilot on the first --pilot-images images '
                        '(printed; the pilot is set aside)')
    g.add_argument('--target-share-se', type=float, metavar='SE',
                   help='shared design: plan for this standard error of each image\'s middle share instead')
    g.add_argument('--pilot-images', type=int, default=2, help='images of the planner\'s pilot (default 2)')


def apply_design_arguments(args: argparse.Namespace, settings) -> None:
    """Put the parsed design options into ``settings`` (an `moga_lab.analysis.estimate.InteractionSettings`), or a
    ValueError naming the bad value.

    Args:
        args: the parsed arguments.
        settings: the settings to fill.
    """
    planned = args.budget is not None or args.target_share_se is not None
    design = args.design or ('shared' if planned else 'two-phase' if getattr(args, 'target_ci', None) else 'fixed')
    if planned and design != 'shared':
        raise ValueError(f'--budget / --target-share-se plan the shared design; --design {design} is not accepted '
                         'with them: accepted: --design shared (or leave --design out)')
    if args.budget is not None and args.target_share_se is not None:
        raise ValueError('give --budget or --target-share-se, not both')
    if args.budget is not None and not args.budget > 0:
        raise ValueError(f'--budget={args.budget} is not accepted; accepted: forward passes per image, > 0')
    if args.target_share_se is not None and not 0 < args.target_share_se < 1:
        raise ValueError(f'--target-share-se={args.target_share_se} is not accepted; accepted: a number in (0, 1)')
    if args.pilot_images < 1:
        raise ValueError(f'--pilot-images={args.pilot_images} is not accepted; accepted: 1 or more')
    settings.design, settings.share = design, args.share
    from moga_lab.analysis.estimate import design_name
    design_name(settings)                      # checks the combination (e.g. two-phase needs --target-ci)


def plan_from_arguments(args: argparse.Namespace, models: Sequence, ev, settings, pixel_mean, out: Optional[str],
                        say: bool = True):
    """The settings to run: ``settings`` as they are, or, with ``--budget`` / ``--target-share-se``, the shared
    design's plan from a pilot on the first ``--pilot-images`` images (printed, and written to ``out/plan.txt``).

    Args:
        args: the parsed arguments.
        models: the classifiers (``nn.Module``).
        ev: the evaluation images (`moga_lab.loaders.load_eval_images`).
        settings: the settings so far.
        pixel_mean: the mean training image (``--baseline pixel-mean``).
        out: the output folder (None: the plan is not written).
        say: print the plan.
    """
    if args.budget is None and args.target_share_se is None:
        return settings
    from moga_lab.analysis.estimate import plan_interaction
    statistic = args.statistic if getattr(args, 'statistic', 'auto') in ('rms', 'mean-abs') else 'rms'
    plan, planned = plan_interaction(models, ev.images, ev.labels, settings, budget=args.budget,
                                     target_share_se=args.target_share_se, statistic=statistic,
                                     pilot_images=args.pilot_images, image_ids=ev.ids, pixel_mean=pixel_mean,
                                     mean=ev.info.mean, std=ev.info.std)
    text = plan.describe()
    if say:
        print(text, file=sys.stderr)
    if out:
        from moga_lab.utils.atomic import atomic_write_text
        os.makedirs(out, exist_ok=True)
        atomic_write_text(os.path.join(out, 'plan.txt'), text + '\n')
    return planned


def chosen_statistic(frame, statistic: str) -> str:
    """The statistic to show first: ``statistic`` unless it is ``auto``, then ``mean-abs`` where its bias bound is
    within `BIAS_SHARE_LIMIT` of its value in the middle orders (0.2n-0.6n) for every model, else ``rms`` (and the
    reason is printed). A named ``mean-abs`` whose bound exceeds the limit is kept, with a warning.

    Args:
        frame: the per-image table.
        statistic: the requested statistic (or ``auto``).
    """
    middle = frame[(frame.ratio >= 0.2) & (frame.ratio <= 0.6)]
    share = (middle.groupby('model').J_abs_bias_bound.mean() / middle.groupby('model').J_abs.mean()).max()
    over = bool(share > BIAS_SHARE_LIMIT)
    if statistic == 'auto':
        if over:
            print(f'statistic: rms first: the bias bound of mean |I| is {share:.0%} of its value in the middle orders '
                  f'at this design (above {BIAS_SHARE_LIMIT:.0%}); --statistic mean-abs draws the paper\'s curve anyway',
                  file=sys.stderr)
        return 'rms' if over else 'mean-abs'
    if statistic == 'mean-abs' and over:
        print(f'warning: the bias bound of mean |I| is {share:.0%} of its value in the middle orders at this design '
              f'(above {BIAS_SHARE_LIMIT:.0%}); more contexts per pair bring it down, the RMS has none', file=sys.stderr)
    return statistic
