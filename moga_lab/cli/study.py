"""``moga-study``: run a study's units, resumably (see `moga_lab.studies.runner`).

    moga-study run STUDY.yaml [--until HH:MM] [--only PATTERN ...] [--executor inline|local|slurm] [--dry-run]
    moga-study status STUDY.yaml
    moga-study export STUDY.yaml ARCHIVE.tar.gz [--include-finished | --lean]
    moga-study import STUDY.yaml ARCHIVE.tar.gz
    moga-study publish STUDY.yaml --to docs/studies [--only FOLDER ...] [--reports-only]
    moga-study reset STUDY.yaml PATTERN [PATTERN ...]
"""
import argparse
import sys
from typing import List, Optional

from moga_lab.cli.common import Parser, fail, int_at_least
from moga_lab.studies.runner import (EXECUTORS, StudyError, export_units, import_units, load_study, paced_minutes,
                                     parse_deadline, publish_study, reset_units, run_study, study_status)

__all__ = ['build_parser', 'main']


def build_parser() -> Parser:
    p = Parser(prog='moga-study', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='action', required=True)
    common = Parser(add_help=False)
    common.add_argument('study', help='the study file (YAML: units with their commands, see moga_lab.studies.runner)')
    common.add_argument('--out', help="the units' root folder (default: the study file's out)")
    r = sub.add_parser('run', parents=[common], help='run unfinished units (finished ones are skipped)')
    r.add_argument('--until', help='start no unit whose estimate would end after HH:MM (or an ISO date-time)')
    r.add_argument('--only', nargs='+', metavar='PATTERN', help='only units whose names match these globs')
    r.add_argument('--executor', choices=EXECUTORS, default='inline')
    r.add_argument('--concurrency', type=int_at_least(1), default=1, help='local: units at once')
    r.add_argument('--threads', type=int_at_least(1), help='OMP_NUM_THREADS per unit')
    r.add_argument('--partition', help='slurm partition')
    r.add_argument('--time', type=int_at_least(1), default=240, help='slurm: minutes per job')
    r.add_argument('--gpus', type=int_at_least(0), default=0, help='slurm: GPUs per job')
    r.add_argument('--dry-run', action='store_true', help='say what would run, run nothing')
    r.add_argument('--rerun-changed', action='store_true',
                   help='units whose command changed since they ran: remove their folders and run them again')
    sub.add_parser('status', parents=[common], help='list the units and their state')
    e = sub.add_parser('export', parents=[common], help="pack unfinished units' folders into an archive")
    e.add_argument('archive')
    e.add_argument('--include-finished', action='store_true', help='pack finished units too')
    e.add_argument('--lean', action='store_true',
                   help='pack finished units too, without the checkpoints no unfinished unit reads (results and logs '
                        'only: small enough to keep beside the study file in version control)')
    i = sub.add_parser('import', parents=[common], help='unpack an exported archive into the study')
    i.add_argument('archive')
    u = sub.add_parser('publish', parents=[common], help="gather the finished units' tables into a study folder")
    u.add_argument('--to', required=True, metavar='DIR', help='the published study folder, e.g. docs/studies/compare')
    u.add_argument('--only', nargs='+', metavar='FOLDER',
                   help="publish only these folders of the study file (e.g. compare, once its units are done); the "
                        "claims of the others stay 'not computed'")
    u.add_argument('--reports-only', action='store_true',
                   help='read no unit: evaluate the claims and render the reports again from the tables already '
                        'published (a changed analysis of the same data)')
    z = sub.add_parser('reset', parents=[common], help="remove units' folders so that the next run starts them clean")
    z.add_argument('patterns', nargs='+', metavar='PATTERN', help='unit names or globs')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        study = load_study(args.study, args.out)
        if args.action == 'status':
            import pandas as pd
            rows = study_status(study)
            table = pd.DataFrame(rows)
            table['waits_for'] = table['waits_for'].map(', '.join)
            print(table.to_string(index=False))
            counts = table.state.value_counts()
            plan = paced_minutes(study)
            left = sum(plan[u] for u in table.loc[table.state != 'done', 'unit'])
            print(f"{counts.get('done', 0)} done, {counts.get('partial', 0)} partial, {counts.get('changed', 0)} "
                  f"changed, {counts.get('pending', 0)} pending; ~{left:.0f} min left (estimates at this machine's "
                  "pace, as --until plans them)")
            return 0
        if args.action == 'export':
            names = export_units(study, args.archive, args.include_finished, args.lean)
            print(f'{len(names)} unit(s) packed into {args.archive}: {", ".join(names) or "none"}')
            return 0
        if args.action == 'publish':
            for name, count in publish_study(study, args.to, args.only, tables=not args.reports_only).items():
                print(f'{args.to}/{name}' + (f': {count} rows' if name.endswith('.csv') else ''))
            return 0
        if args.action == 'reset':
            reset = reset_units(study, args.patterns)
            print(f'{len(reset["reset"])} unit(s) reset: {", ".join(reset["reset"])}')
            if reset['finished_after']:
                print(f'finished units that use their outputs (kept): {", ".join(reset["finished_after"])}')
            return 0
        if args.action == 'import':
            names = import_units(study, args.archive)
            print(f'{len(names)} unit(s) unpacked into {study.out}: {", ".join(names) or "none"}')
            return 0
        slurm = dict(timeout_min=args.time, **({'slurm_partition': args.partition} if args.partition else {}),
                     **({'gpus_per_node': args.gpus} if args.gpus else {}))
        result = run_study(study, args.executor, parse_deadline(args.until) if args.until else None, args.only,
                           args.concurrency, args.threads, slurm, args.dry_run,
                           log=lambda line: print(line, flush=True), rerun_changed=args.rerun_changed)
        stopped = f", {len(result['stopped'])} stopped" if 'stopped' in result else ''
        print(f"{len(result['done'])} finished, {len(result['failed'])} failed{stopped}, {len(result['skipped'])} "
              f"not started")
        return 1 if result['failed'] or 'stopped' in result else 0
    except StudyError as error:
        fail(p.prog, str(error))
        raise  # (fail exits)


if __name__ == '__main__':
    sys.exit(main())
