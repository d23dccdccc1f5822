"""Declared claims against the published studies: the verdicts, and what the studies can decide.

    moga-claims --registry experiments/claims/paper.yaml --out docs/studies --readme README.md --readme docs/paper.md
    moga-claims power experiments/claims/paper.yaml [--difference CLAIM=VALUE ...] [--out docs/studies/power.csv]

``--registry`` evaluates the claims a registry declared before the studies ran (`moga_lab.studies.claims`):
each with its interval over training seeds, images, pairs and contexts, adjusted over its family, written to
``--out``/claims.csv and claims.md, each study folder's claims.csv and report, and the findings tables of ``--readme``.

``power`` gives each family claim's decidable effect with 80 % power (at Holm's first and last step) and the seeds a
study would need, per number of images, to decide a stated difference (default: the size of the claim's own
estimate) (`moga_lab.studies.power`).
"""
import argparse
import sys

from moga_lab.cli.common import Parser


def _power(argv) -> int:
    p = Parser(prog='moga-claims power', description='Each declared claim\'s decidable effect at 80 % power and the '
               'seeds and images needed to decide a stated difference, from the published studies.')
    p.add_argument('registry', help='a claims registry (YAML)')
    p.add_argument('--difference', action='append', default=[], metavar='CLAIM=VALUE',
                   help='the difference to plan a claim for (repeatable; default: the size of its estimate)')
    p.add_argument('--power', type=float, default=0.8, help='the wanted power (default 0.8)')
    p.add_argument('--out', help='write the table as CSV here')
    args = p.parse_args(argv)
    differences = {}
    for item in args.difference:
        cid, sep, value = item.partition('=')
        try:
            differences[cid] = float(value)
        except ValueError:
            sep = ''
        if not sep or not cid:
            p.error(f'--difference {item!r} is not accepted; accepted: CLAIM=VALUE, e.g. compare_middle=0.03')
    if not 0 < args.power < 1:
        p.error(f'--power {args.power} is not accepted; accepted: a number between 0 and 1')
    from moga_lab.studies.power import claims_power
    try:
        table = claims_power(args.registry, differences, args.power)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    print(table.to_string(index=False, float_format=lambda x: f'{x:.4g}'))
    if args.out:
        from moga_lab.utils.atomic import atomic_write_csv
        atomic_write_csv(args.out, table)
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['power']:
        return _power(argv[1:])
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--registry', metavar='FILE', required=True,
                   help='a claims registry (YAML): evaluate its declared claims, adjusted over the family, into '
                        '--out DIR/claims.csv and claims.md')
    p.add_argument('--out', help='the folder of the family\'s claims.csv and claims.md')
    p.add_argument('--readme', metavar='FILE', action='append', default=[],
                   help='regenerate the findings table in FILE (README.md, docs/paper.md; repeatable)')
    p.add_argument('--compare', action='append', default=[], metavar='DIR', help=argparse.SUPPRESS)
    p.add_argument('--ablation', action='append', default=[], metavar='DIR', help=argparse.SUPPRESS)
    if any(a.startswith(('--compare', '--ablation')) for a in argv):
        p.error('--compare / --ablation are gone: declare the claims in a registry and run moga-claims --registry '
                'FILE (experiments/claims/paper.yaml shows how)')
    args = p.parse_args(argv)
    from moga_lab.studies.findings import evaluate_declared
    try:
        print(evaluate_declared(args.registry, args.out, args.readme).attrs['markdown'])
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
