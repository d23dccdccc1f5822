"""Studies as resumable units: the package's runner for work that outlasts one allocation or one machine.

A study is a YAML file of **units**. A unit is one command line of the package's own tools (``moga-fit``,
``moga-interaction``, ``moga-gradcam``, ``moga-sweep``, ...) with its own folder, an estimate of its minutes and the
units it needs first::

    name: compare
    out: runs/compare                      # unit folders: <out>/<unit name>
    units:
      - name: fit-{model}-s{seed}          # a matrix expands one entry into a unit per combination
        matrix: {model: [moganet_xtiny, convnext_atto], seed: [0, 1]}
        command: moga-fit --model {model} --seed {seed} --run-dir {dir} --epochs 3
        resume: {if_exists: last.ckpt, args: --resume}   # how a stopped unit continues (Lightning's last.ckpt)
        minutes: 40
      - name: curves-{model}-s{seed}
        matrix: {model: [moganet_xtiny, convnext_atto], seed: [0, 1]}
        after: [fit-{model}-s{seed}]
        command: moga-interaction --checkpoint {out}/fit-{model}-s{seed}/best.ckpt --out {dir}
        minutes: 25
    publish:                               # what `publish --to DIR` gathers: DIR/<table>
      compare/interaction_seeds.csv: {from: "curves-*", file: interaction.csv}
      compare/accuracy.csv: {from: "fit-*", file: results.yaml, columns: {test_top1: test/acc1}, percent: [test_top1]}
    reports:                               # then a report per published folder (moga_lab.studies.report)
      compare: {title: MogaNet vs ConvNeXt, reference: moganet_xtiny}
    claims: {registry: experiments/claims/paper.yaml, readme: [README.md]}   # declared claims, evaluated on them

``run`` skips finished units, resumes unfinished ones, and starts a unit only when the units it needs are
finished; ``--until HH:MM`` starts no unit whose estimate would end after the deadline (time-limited allocations);
``status`` lists every unit; ``export`` packs the folders of unfinished units (checkpoints included) into an
archive and ``import`` unpacks one, to move a study to another machine or survive a preempted node (``export
--lean`` packs finished units' results too, without the checkpoints no unfinished unit reads: a study that outlasts
its machines keeps that small archive beside its study file). A unit is
finished when the runner has written ``<dir>/unit.yaml`` after the command exited with status 0 (atomically: a
stopped runner never marks a unit finished; a SIGTERM or SIGINT is passed on to the command, and a unit so stopped
is not finished whatever its exit status); its log is ``<dir>/unit.log``. ``reset`` removes units' folders so
that the next run starts them clean.

Units run one after another in this process's machine (``inline``), as submitit jobs on this machine (``local``,
``concurrency`` at a time) or as Slurm jobs, one per unit (``slurm``; a later run watches a job Slurm still lists
instead of submitting its unit again). submitit carries each unit's command line to its process or node; the
ordering, the deadline and the archive are ours, because submitit has no notion of a study.
"""
import contextlib
import datetime as dt
import fnmatch
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from moga_lab.utils.atomic import atomic_write_text
from moga_lab.utils.runtime import describe_machine

__all__ = ['Unit', 'Study', 'StudyError', 'COMMAND_FILE', 'load_study', 'unit_state', 'study_status', 'run_study', 'export_units',
           'import_units', 'publish_study', 'parse_deadline', 'paced_minutes', 'EXECUTORS', 'DONE_FILE', 'LOG_FILE',
           'SLURM_JOB_FILE']

EXECUTORS = ('inline', 'local', 'slurm')
"""Where units run: here one after another, as submitit processes on this machine, or as Slurm jobs."""
DONE_FILE = 'unit.yaml'
"""Written into a unit's folder, atomically, once its command exited with status 0: the unit is finished."""
LOG_FILE = 'unit.log'
"""A unit's stdout and stderr, appended on every (re)start."""
SLURM_JOB_FILE = 'slurm.job'
"""A unit submitted to Slurm: its job id, so that a later ``run`` watches that job while Slurm still lists it instead
of submitting the unit again beside it (a runner stopped on the login node leaves its jobs running)."""
# squeue states of a job that has not ended (a requeued job keeps its id)
_SLURM_LIVE = {'PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED',
               'RESIZING', 'SUSPENDED', 'STOPPED', 'SIGNALING', 'STAGE_OUT'}
_UNIT_KEYS = {'name', 'command', 'matrix', 'after', 'minutes', 'resume', 'threads'}
_PUBLISH_KEYS = {'from', 'file', 'columns', 'percent', 'replace', 'shared'}
_SHARED_KEYS = {'table', 'where', 'units'}
_STUDY_KEYS = {'name', 'out', 'units', 'publish', 'reports', 'claims'}
_REPORT_KEYS = {'title', 'reference', 'design', 'noun'}
_CLAIMS_KEYS = {'registry', 'readme'}
_TABLE_SUFFIXES = ('.csv', '.yaml', '.yml')
_CHECKPOINT_SUFFIXES = ('.ckpt', '.pt', '.pth', '.safetensors')


class StudyError(ValueError):
    """A study file or a request the runner cannot honour (reported in one line)."""


@dataclass
class Unit:
    """One command line with its folder.

    Args:
        name: unique within the study; also the folder's name.
        command: the argv (``moga-X`` runs as ``python -m moga_lab.cli.X``).
        dir: the unit's folder (its outputs, ``unit.log`` and, once finished, ``unit.yaml``).
        minutes: the estimate ``--until`` plans with (in a study file, a number or ``{matrix name: {value: number}}``).
        after: units that must be finished first.
        resume_if: a file whose presence in ``dir`` means the command can continue (e.g. ``last.ckpt``).
        resume_args: the arguments that make it continue (e.g. ``['--resume']``).
        threads: ``OMP_NUM_THREADS`` for this unit (None: the runner's).
        keys: the matrix values that made this unit (e.g. ``{'model': 'convnext_atto', 'seed': 1}``); `publish_study`
            adds them as columns.
        entry: the index of the study file's entry that made it (units of one entry share an estimate's pace).
    """
    name: str
    command: List[str]
    dir: str
    minutes: float = 0.0
    after: List[str] = field(default_factory=list)
    resume_if: Optional[str] = None
    resume_args: List[str] = field(default_factory=list)
    threads: Optional[int] = None
    keys: Dict[str, Any] = field(default_factory=dict)
    entry: int = 0

    def argv(self) -> List[str]:
        """The command to run now: with ``resume_args`` when the unit left something to continue from."""
        resume = self.resume_if and os.path.exists(os.path.join(self.dir, self.resume_if))
        return _executable(self.command + (self.resume_args if resume else []))


@dataclass
class Study:
    """A study file, expanded.

    Args:
        name: the study's name.
        out: the root of the unit folders.
        units: the units in file order.
        publish: the tables (and figures) `publish_study` gathers from the units (the ``publish:`` section).
        reports: published folder -> `moga_lab.studies.report.seed_study_report` arguments (``reports:``).
        claims: ``{registry: FILE, readme: [FILE, ...]}``: the declared claims `publish_study` evaluates once the
            tables are there (``claims:``).
    """
    name: str
    out: str
    units: List[Unit]
    publish: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    reports: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    claims: Dict[str, Any] = field(default_factory=dict)

    def unit(self, name: str) -> Unit:
        for u in self.units:
            if u.name == name:
                return u
        raise StudyError(f'no unit {name!r} in study {self.name!r}; units: {", ".join(u.name for u in self.units)}')


def _executable(argv: List[str]) -> List[str]:
    """``moga-X ...`` runs as ``python -m moga_lab.cli.X`` with this interpreter (the console scripts need not be
    on PATH), and ``python`` is this interpreter."""
    head = argv[0]
    if head.startswith('moga-'):
        module = 'moga_lab.cli.' + head[len('moga-'):].replace('-', '_')
        if importlib.util.find_spec(module) is not None:
            return [sys.executable, '-m', module] + argv[1:]
    if head in ('python', 'python3'):
        return [sys.executable] + argv[1:]
    return argv


def _expand(entry: Dict[str, Any], out: str, where: str, index: int = 0) -> List[Unit]:
    unknown = sorted(set(entry) - _UNIT_KEYS)
    if unknown:
        raise StudyError(f'{where}: unknown keys {unknown}; accepted: {", ".join(sorted(_UNIT_KEYS))}')
    for key in ('name', 'command'):
        if not entry.get(key):
            raise StudyError(f'{where}: no {key!r}; every unit needs a name and a command')
    matrix = entry.get('matrix') or {}
    if not isinstance(matrix, dict) or any(not isinstance(v, list) or not v for v in matrix.values()):
        raise StudyError(f'{where}: matrix must map names to non-empty lists, e.g. {{seed: [0, 1]}}; got {matrix!r}')
    resume = entry.get('resume') or {}
    units = []
    for values in itertools.product(*matrix.values()) if matrix else [()]:
        keys = dict(zip(matrix, values))
        try:
            name = str(entry['name']).format(**keys)
            folder = os.path.join(out, name)
            fill = dict(keys, dir=folder, out=out, name=name)
            command = entry['command']
            parts = shlex.split(command.format(**fill)) if isinstance(command, str) else \
                [str(c).format(**fill) for c in command]
            after = [str(a).format(**keys) for a in entry.get('after') or []]
            resume_args = resume.get('args') or []
            resume_args = shlex.split(resume_args) if isinstance(resume_args, str) else [str(a) for a in resume_args]
        except (KeyError, IndexError) as error:
            raise StudyError(f'{where}: {{{error.args[0]}}} is not a matrix name; accepted: '
                             f'{", ".join(list(matrix) + ["dir", "out", "name"])}') from None
        minutes = entry.get('minutes', 0)
        if isinstance(minutes, dict) and len(minutes) == 1 and next(iter(minutes)) in keys:  # {model: {name: min}}
            by = next(iter(minutes))
            minutes = minutes[by].get(keys[by]) if isinstance(minutes[by], dict) else None
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes < 0:
            raise StudyError(f'{where}: minutes={entry.get("minutes")!r}; accepted: a number >= 0 (the estimate --until '
                             'uses), or {matrix name: {value: number}} with a number for every value')
        units.append(Unit(name, parts, folder, float(minutes), after, resume.get('if_exists'), resume_args,
                          entry.get('threads'), keys, index))
    return units


def load_study(path: str, out: Optional[str] = None) -> Study:
    """Read and expand a study file.

    Args:
        path: the YAML file (see the module docstring).
        out: overrides the file's ``out``.

    Raises:
        StudyError: the file cannot be read or names a bad value (the message names it and what is accepted).
    """
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except OSError as error:
        raise StudyError(f'cannot read study file {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        raise StudyError(f'{path} is not valid YAML: {str(error).splitlines()[0]}') from None
    if not isinstance(raw, dict) or not isinstance(raw.get('units'), list) or not raw['units']:
        raise StudyError(f'{path}: a study file needs a list "units:" (see moga_lab.studies.runner)')
    unknown = sorted(set(raw) - _STUDY_KEYS)
    if unknown:
        raise StudyError(f'{path}: unknown keys {unknown}; accepted: {", ".join(sorted(_STUDY_KEYS))}')
    out = out or raw.get('out') or os.path.join('runs', raw.get('name') or os.path.splitext(os.path.basename(path))[0])
    units = [u for k, entry in enumerate(raw['units'])
             for u in _expand(entry if isinstance(entry, dict) else {}, out, f'{path}: unit {k + 1}', k)]
    names = [u.name for u in units]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise StudyError(f'{path}: unit names must be unique; repeated: {doubles}')
    for u in units:
        missing = [a for a in u.after if a not in names]
        if missing:
            raise StudyError(f'{path}: unit {u.name!r} comes after {missing}, which the study does not have')
    publish = _section(raw, path, 'publish', ('from', 'file'), _PUBLISH_KEYS,
                       '"from" (a glob of unit names) and "file" (a CSV or YAML file each unit writes)')
    for table, spec in publish.items():
        shared = spec.get('shared')
        if shared is not None and (not isinstance(shared, dict) or not shared.get('table') or set(shared) - _SHARED_KEYS
                                   or not isinstance(shared.get('where') or {}, dict)):
            raise StudyError(f'{path}: publish.{table}.shared={shared!r} is not accepted; accepted: {{table: a table '
                             'already published under the same --to, where: {column: value}, units: a glob of the '
                             'unit names behind those rows}')
    reports = _section(raw, path, 'reports', ('title', 'reference'), _REPORT_KEYS,
                       '"title" and "reference" (the model or row the others are compared with)')
    claims = raw.get('claims') or {}
    if claims and (not isinstance(claims, dict) or not claims.get('registry') or set(claims) - _CLAIMS_KEYS):
        raise StudyError(f'{path}: claims={claims!r} is not accepted; accepted: {{registry: FILE, readme: [FILE, ...]}}')
    return Study(raw.get('name') or os.path.splitext(os.path.basename(path))[0], out, units, publish, reports, claims)


def unit_state(unit: Unit) -> str:
    """``done`` (finished with the command the study file gives now), ``changed`` (finished, or started, with
    another command: its outputs are of another recipe), ``partial`` (its folder holds something to resume from, or
    at least a started log) or ``pending`` (never started).

    Args:
        unit: a unit of a loaded study.
    """
    recorded = _recorded_command(unit)
    if recorded is not None and recorded != _portable_command(unit):
        return 'changed'
    if os.path.isfile(os.path.join(unit.dir, DONE_FILE)):
        return 'done'
    if unit.resume_if and os.path.exists(os.path.join(unit.dir, unit.resume_if)):
        return 'partial'
    return 'partial' if os.path.isfile(os.path.join(unit.dir, LOG_FILE)) else 'pending'


COMMAND_FILE = 'unit.command'
"""The command line a unit was first started with: a later study file that changes it marks the unit ``changed``."""


def _with_out(text: str, unit: Unit) -> str:
    """``text`` with the study's output root (as the study names it, and absolute) written ``{out}``."""
    root = os.path.dirname(unit.dir)
    for form in sorted({root, os.path.abspath(root)}, key=len, reverse=True):
        text = text.replace(form, '{out}')
    return text


def _portable_command(unit: Unit) -> str:
    """The unit's command with the study's output root written as ``{out}``: a study moved to another folder (or
    machine) keeps its units' identity."""
    return _with_out(shlex.join(unit.command), unit)


def _recorded_command(unit: Unit) -> Optional[str]:
    """The command line a unit was started with (written before its first run), or None if it never started."""
    path = os.path.join(unit.dir, COMMAND_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()


def _record(unit: Unit) -> Dict[str, Any]:
    with open(os.path.join(unit.dir, DONE_FILE)) as f:
        return yaml.safe_load(f) or {}


def study_status(study: Study) -> List[Dict[str, Any]]:
    """One row per unit: name, state, its estimate, the minutes it took and the machine that ran it (finished units),
    and the unfinished units it waits for.

    Args:
        study: from `load_study`.
    """
    states = {u.name: unit_state(u) for u in study.units}
    rows = []
    for u in study.units:
        record = _record(u) if states[u.name] == 'done' else {}
        rows.append(dict(unit=u.name, state=states[u.name], estimate_min=u.minutes,
                         took_min=record.get('minutes'), machine=record.get('machine'),
                         waits_for=[a for a in u.after if states[a] != 'done']))
    return rows


def paced_minutes(study: Study) -> Dict[str, float]:
    """The minutes ``--until`` plans each unit with: its estimate, times the largest ratio of taken to estimated
    minutes among the finished units of its study-file entry that ran on this machine class (`describe_machine`) in
    one go (a resumed unit's record holds its last part only); the estimate alone where none did. A study planned on
    one CPU class so runs to its deadline on a faster one, and stops in time on a slower one.

    Args:
        study: from `load_study`.
    """
    machine, ratios = describe_machine(), {}
    for u in study.units:
        record = _record(u) if unit_state(u) == 'done' and u.minutes > 0 else {}
        if record.get('machine') == machine and not record.get('resumed') and record.get('minutes'):
            ratios.setdefault(u.entry, []).append(float(record['minutes']) / u.minutes)
    return {u.name: u.minutes * max(ratios.get(u.entry, [1.0])) for u in study.units}


def parse_deadline(text: str, now: Optional[dt.datetime] = None) -> dt.datetime:
    """A deadline as a datetime.

    Args:
        text: ``HH:MM`` (local time; the next such moment) or an ISO date-time.
        now: the present (default: the clock's).

    Raises:
        StudyError: ``text`` is neither.
    """
    now = now or dt.datetime.now()
    try:
        hour, minute = (int(p) for p in text.split(':'))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return at if at > now else at + dt.timedelta(days=1)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise StudyError(f'--until {text!r} is not a time; accepted: HH:MM (e.g. 17:30) or YYYY-MM-DDTHH:MM') from None


def _section(raw: Dict[str, Any], path: str, name: str, required: Sequence[str], keys: set,
             needs: str) -> Dict[str, Dict[str, Any]]:
    """A study file's ``name:`` section (entry -> settings), each entry checked for its required and known keys."""
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        raise StudyError(f'{path}: {name} is a {type(section).__name__}; accepted: a mapping (entry: settings)')
    for entry, spec in section.items():
        if not isinstance(spec, dict) or not all(spec.get(k) for k in required):
            raise StudyError(f'{path}: {name}.{entry} needs {needs}')
        unknown = sorted(set(spec) - keys)
        if unknown:
            raise StudyError(f'{path}: {name}.{entry}: unknown keys {unknown}; accepted: {", ".join(sorted(keys))}')
    return section


def _select(study: Study, only: Optional[Sequence[str]], option: str = '--only') -> List[Unit]:
    if not only:
        return list(study.units)
    chosen = [u for u in study.units if any(fnmatch.fnmatchcase(u.name, p) for p in only)]
    if not chosen:
        raise StudyError(f'{option} {" ".join(only)} matches no unit; units: {", ".join(u.name for u in study.units)}')
    return chosen


def _queued_slurm_job(unit: Unit) -> Optional[str]:
    """The id of the Slurm job this unit was submitted as, while Slurm still lists it as not ended; None where it
    was never submitted, has ended, or there is no Slurm here (``squeue`` not on PATH)."""
    path = os.path.join(unit.dir, SLURM_JOB_FILE)
    if not os.path.isfile(path) or shutil.which('squeue') is None:
        return None
    with open(path) as f:
        job_id = f.read().strip()
    if not re.fullmatch(r'[0-9]+(_[0-9]+)?', job_id):
        return None
    out = subprocess.run(['squeue', '--noheader', '--jobs', job_id, '--format', '%T'], capture_output=True, text=True)
    if out.returncode != 0 and 'invalid job id' not in out.stderr.lower():  # (an id Slurm has forgotten: ended)
        raise StudyError(f'{unit.name}: squeue could not say whether its job {job_id} still runs '
                         f'({out.stderr.strip()[:200] or f"exit status {out.returncode}"}); nothing was submitted, '
                         'so that it does not run twice: try again once squeue answers')
    return job_id if set(out.stdout.split()) & _SLURM_LIVE else None


def _refuse_queued(units: Sequence[Unit], action: str) -> None:
    """Removing a unit's folder while its Slurm job runs would let the next ``run`` submit it beside that job."""
    queued = {u.name: job for u in units for job in [_queued_slurm_job(u)] if job}
    if queued:
        raise StudyError(f'{action}: {", ".join(f"{n} (job {j})" for n, j in queued.items())} still queued or '
                         f'running on Slurm; scancel {" ".join(queued.values())} first')


def _finish(unit: Unit, seconds: float, resumed: bool) -> None:
    atomic_write_text(os.path.join(unit.dir, DONE_FILE), yaml.safe_dump(dict(
        unit=unit.name, command=_portable_command(unit), minutes=round(seconds / 60, 2), machine=describe_machine(),
        finished=dt.datetime.now().isoformat(timespec='seconds'), resumed=resumed), sort_keys=False))


def _environment(unit: Unit, threads: Optional[int]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != 'MOGA_LAB_RUN_DIR'}  # (a fit's DDP workers' run folder)
    n = unit.threads or threads
    if n:
        env['OMP_NUM_THREADS'] = str(n)
    return env


@contextlib.contextmanager
def _on_stop_signals(handler: Callable[[int], None]):
    """Call ``handler(signum)`` on SIGTERM or SIGINT while inside (the previous handlers come back after). Yields
    whether it could: handlers can only be set in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, lambda signum, frame: handler(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _call_forwarding_stops(argv: List[str], log, env: Dict[str, str]):
    """Run ``argv``; a SIGTERM or SIGINT to this process goes on to the command. Returns (exit status, the signal
    that stopped it or 0). A stopped unit is never finished, whatever its status: Lightning, for one, exits with
    status 0 on SIGTERM."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    stopped: List[int] = []

    def forward(signum: int) -> None:
        stopped.append(signum)
        proc.send_signal(signum)

    with _on_stop_signals(forward):
        code = proc.wait()
    return code, (stopped[0] if stopped else 0)


def _run_inline(unit: Unit, threads: Optional[int]) -> int:
    os.makedirs(unit.dir, exist_ok=True)
    if _recorded_command(unit) is None:
        atomic_write_text(os.path.join(unit.dir, COMMAND_FILE), _portable_command(unit) + '\n')
    argv = unit.argv()
    start = time.perf_counter()
    with open(os.path.join(unit.dir, LOG_FILE), 'a') as log:
        log.write(f'\n$ {shlex.join(argv)}\n')
        log.flush()
        code, stopped = _call_forwarding_stops(argv, log, _environment(unit, threads))
    if stopped:
        log_line = f'stopped by signal {stopped} (exit status {code}): not finished; the next run resumes it\n'
        with open(os.path.join(unit.dir, LOG_FILE), 'a') as log:
            log.write(log_line)
        raise UnitStopped(f'{unit.name} stopped by signal {stopped}; not finished', stopped)
    if code == 0:
        _finish(unit, time.perf_counter() - start, resumed=argv != _executable(unit.command))
    return code


def run_study(study: Study, executor: str = 'inline', until: Optional[dt.datetime] = None,
              only: Optional[Sequence[str]] = None, concurrency: int = 1, threads: Optional[int] = None,
              slurm: Optional[Dict[str, Any]] = None, dry_run: bool = False,
              log: Callable[[str], None] = print, rerun_changed: bool = False) -> Dict[str, List[str]]:
    """Run the study's unfinished units in file order, each once the units it needs are finished.

    Args:
        study: from `load_study`.
        executor: ``inline`` (one after another, here), ``local`` (submitit processes on this machine,
            ``concurrency`` at a time) or ``slurm`` (submitit: one job per unit; ``slurm`` holds its parameters,
            e.g. ``{'slurm_partition': 'gpu', 'timeout_min': 240, 'gpus_per_node': 1}``).
        slurm: submitit's Slurm parameters (``executor='slurm'`` only).
        until: start no unit whose estimate would end after this moment (None: no deadline).
        only: glob patterns of unit names (the units they need are not added; they must be finished).
        concurrency: ``local``: units at once.
        threads: ``OMP_NUM_THREADS`` for each unit (a unit's own ``threads`` wins).
        dry_run: say what would run, run nothing.
        log: where progress lines go.
        rerun_changed: units whose command changed since they ran (state ``changed``) have their folder removed
            and run again; without it the runner refuses to start while any chosen unit has changed.

    Returns:
        ``{'done': [...], 'failed': [...], 'skipped': [...]}``: units finished by this call, units whose command
        failed (see their ``unit.log``), and units not started (deadline, or waiting for a unit that did not finish);
        with ``inline`` or ``local``, a SIGTERM or SIGINT to the runner stops the running units (resumable, not
        finished), starts no further one and adds ``'stopped': [...]``.
    """
    if executor not in EXECUTORS:
        raise StudyError(f'--executor {executor!r} is not accepted; accepted: {", ".join(EXECUTORS)}')
    if executor == 'slurm' and shutil.which('sbatch') is None and not dry_run:
        raise StudyError('--executor slurm: no Slurm here (sbatch is not on PATH); run on a Slurm login node, or use '
                         '--executor local')
    chosen = _select(study, only)
    changed = [u for u in chosen if unit_state(u) == 'changed']
    if changed and not rerun_changed:
        raise StudyError(f'units {", ".join(u.name for u in changed)} ran with another command than the study file '
                         'gives now (their outputs are of another recipe); --rerun-changed removes their folders and '
                         'runs them again')
    if not dry_run:
        _refuse_queued(changed, '--rerun-changed')
    for u in changed if not dry_run else []:
        shutil.rmtree(u.dir)
        log(f'{u.name}: its command changed; its folder was removed and it runs again')
    done = {u.name for u in study.units if unit_state(u) == 'done'}
    todo = [u for u in chosen if u.name not in done]
    result: Dict[str, List[str]] = {'done': [], 'failed': [], 'skipped': []}
    plan = paced_minutes(study)
    paced = sum(plan[u.name] for u in todo) != sum(u.minutes for u in todo)
    log(f'[study {study.name}] {len(chosen) - len(todo)} of {len(chosen)} units finished; {len(todo)} to run '
        f'(~{sum(plan[u.name] for u in todo):.0f} min estimated'
        f'{" at the pace of the units finished on this machine" if paced else ""})'
        f'{" by " + until.strftime("%H:%M") if until else ""}')
    if executor == 'inline' or dry_run:
        for k, u in enumerate(todo, 1):
            waiting = [a for a in u.after if a not in done]
            ends = dt.datetime.now() + dt.timedelta(minutes=plan[u.name])
            if waiting:
                log(f'[{k}/{len(todo)}] {u.name}: waits for {", ".join(waiting)}')
                result['skipped'].append(u.name)
                continue
            if until is not None and ends > until:
                log(f'[{k}/{len(todo)}] {u.name}: not started, its ~{plan[u.name]:.0f} min would end after '
                    f'{until.strftime("%H:%M")}')
                result['skipped'].append(u.name)
                continue
            state = unit_state(u)
            log(f'[{k}/{len(todo)}] {u.name}: {"resumes" if state == "partial" else "starts"} '
                f'(~{plan[u.name]:.0f} min): {shlex.join(u.command)}')
            if dry_run:
                done.add(u.name)
                continue
            try:
                code = _run_inline(u, threads)
            except UnitStopped as stop:  # the runner was told to stop: so are its remaining units
                result['stopped'] = [u.name]
                result['skipped'].extend(v.name for v in todo[k:])
                log(f'[{k}/{len(todo)}] {u.name}: stopped by signal {stop.signum}, not finished (the next run '
                    'resumes it); no further unit starts')
                break
            if code == 0:
                done.add(u.name)
                result['done'].append(u.name)
                plan.update(paced_minutes(study))
                log(f'[{k}/{len(todo)}] {u.name}: finished in {_record(u)["minutes"]:.1f} min')
            else:
                result['failed'].append(u.name)
                log(f'[{k}/{len(todo)}] {u.name}: FAILED (exit {code}); {_failure(u)}')
        return result
    return _run_submitit(study, todo, done, executor, until, concurrency, threads, slurm or {}, result, log, plan)


def _failure(u: Unit, error: Optional[BaseException] = None) -> str:
    """Where to look and the command's last words (its one-line error); submitit's own message ends in log paths."""
    path = os.path.join(u.dir, LOG_FILE)
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode('utf-8', 'replace').splitlines() if ln.strip()]
    except OSError:
        lines = []
    if lines and not lines[-1].startswith('$ '):
        return f'see {path}: {lines[-1][:300]}'
    # the command printed nothing: its exit code (in _UnitJob's error, which submitit wraps in its own trace)
    code = re.search(r'exited with (-?\d+)', str(error or ''))
    return f'see {path}: ' + (f'exited with {code.group(1)} and printed nothing' if code else
                              str(error).strip().splitlines()[0][:300] if error is not None and str(error).strip() else
                              'no output')


class UnitStopped(RuntimeError):
    """A unit's command stopped by a SIGTERM or SIGINT passed on to it: not finished, resumable."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # a submitit job sends it back pickled
        return UnitStopped, (str(self), self.signum)


class _UnitJob:
    """A unit as a submitit job: runs the command, then marks the unit finished (picklable)."""

    def __init__(self, unit: Unit, threads: Optional[int]):
        self.unit, self.threads = unit, threads

    def __call__(self) -> int:
        code = _run_inline(self.unit, self.threads)
        if code != 0:
            raise RuntimeError(f'{self.unit.name} exited with {code}; see {os.path.join(self.unit.dir, LOG_FILE)}')
        return code

    def checkpoint(self):
        """Preempted or timed out on Slurm: requeue; the unit resumes through its ``resume`` arguments."""
        import submitit
        return submitit.helpers.DelayedSubmission(_UnitJob(self.unit, self.threads))


def _run_submitit(study, todo, done, executor, until, concurrency, threads, slurm, result, log, plan):
    import submitit
    folder = os.path.join(study.out, '.submitit')
    if executor == 'local':
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=int(max(u.minutes for u in todo) * 3 + 10) if todo else 60)
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster='slurm')
        ex.update_parameters(**{'timeout_min': 240, **slurm})
    pending, running = list(todo), []
    stops: List[int] = []

    def cancel(signum: int) -> None:
        # each unit stops resumable, not finished, instead of running on, unwatched, beside the next runner's copies
        # (Slurm jobs are the cluster's to stop). A local job's id is its controller's pid: SIGTERM makes the
        # controller pass the signal on to the unit and wait for it, where submitit's cancel() (SIGINT) kills the
        # unit one second later and prints the controller's traceback
        stops.append(signum)
        for _, job in running:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(job.job_id), signal.SIGTERM)

    with _on_stop_signals(cancel) if executor == 'local' else contextlib.nullcontext():
        _drive(study, pending, running, done, ex, until, concurrency, executor, threads, stops, result, log, plan)
    if stops:
        result.setdefault('stopped', [])
        log(f'stopped by signal {stops[0]}: {len(result["stopped"])} unit(s) not finished '
            f'({", ".join(result["stopped"]) or "none running"}); the next run resumes them')
    return result


def _slurm_job(folder: str, job_id: str):
    import submitit
    return submitit.SlurmJob(folder=folder, job_id=job_id)


def _drive(study, pending, running, done, ex, until, concurrency, executor, threads, stops, result, log, plan):
    import submitit
    while pending or running:
        if stops:  # stopping: start nothing more, wait for the running units to stop
            result['skipped'].extend(u.name for u in pending)
            pending.clear()
        for u in list(pending):
            if len(running) >= concurrency and executor == 'local':
                break
            if any(a in [p.name for p in pending] + [r.name for r, _ in running] for a in u.after):
                continue                                            # its inputs are still to come
            queued = _queued_slurm_job(u) if executor == 'slurm' else None
            if queued:  # a stopped runner's job: watch it (its result comes back through submitit's folder)
                pending.remove(u)
                running.append((u, _slurm_job(os.path.join(study.out, '.submitit'), queued)))
                log(f'{u.name}: already on Slurm as job {queued}; watched, not submitted again')
                continue
            missing = [a for a in u.after if a not in done]
            if missing or (until is not None and dt.datetime.now() + dt.timedelta(minutes=plan[u.name]) > until):
                pending.remove(u)
                result['skipped'].append(u.name)
                log(f'{u.name}: not started (' + (f'waits for {", ".join(missing)}, not finished' if missing else
                                                  f'its ~{plan[u.name]:.0f} min would end after {until:%H:%M}') + ')')
                continue
            pending.remove(u)
            job = ex.submit(_UnitJob(u, threads))
            running.append((u, job))
            if executor == 'slurm':
                os.makedirs(u.dir, exist_ok=True)
                atomic_write_text(os.path.join(u.dir, SLURM_JOB_FILE), f'{job.job_id}\n')
            log(f'{u.name}: submitted (~{plan[u.name]:.0f} min)')
        if not running:
            break
        job = next(submitit.helpers.as_completed([j for _, j in running], poll_frequency=2))
        u = next(u for u, j in running if j is job)
        running[:] = [(r, j) for r, j in running if j is not job]   # in place: the stop handler reads it
        try:
            job.result()
            done.add(u.name)
            result['done'].append(u.name)
            plan.update(paced_minutes(study))
            log(f'{u.name}: finished')
        except Exception as error:  # noqa: BLE001 - one failed unit must not stop the others
            if stops and unit_state(u) != 'done':
                result.setdefault('stopped', []).append(u.name)
                log(f'{u.name}: stopped, not finished (the next run resumes it)')
                continue
            result['failed'].append(u.name)
            log(f'{u.name}: FAILED; {_failure(u, error)}')


def _members(tar: tarfile.TarFile):
    for m in tar.getmembers():
        path = os.path.normpath(m.name)
        if path.startswith('..') or os.path.isabs(path) or not (m.isfile() or m.isdir()):
            raise StudyError(f'archive member {m.name!r} is not a plain file inside the study; refused')
        yield m


def reset_units(study: Study, patterns: Sequence[str]) -> Dict[str, List[str]]:
    """Remove the folders of the units matching ``patterns`` (any state), so that the next ``run`` starts them
    clean: for a unit whose outputs turned out wrong (a bug fixed since, an input replaced).

    Returns:
        ``{'reset': [...], 'finished_after': [...]}``: the units reset, and finished units that use their outputs
        (they are kept; reset them too if those outputs will change).
    """
    chosen = _select(study, patterns, option='reset')
    _refuse_queued(chosen, 'reset')
    names = {u.name for u in chosen}
    for u in chosen:
        if os.path.isdir(u.dir):
            shutil.rmtree(u.dir)
    users, grew = set(), True
    while grew:  # everything downstream, not only direct users
        grew = False
        for u in study.units:
            if u.name not in users and u.name not in names and any(a in names | users for a in u.after):
                users.add(u.name)
                grew = True
    return {'reset': [u.name for u in chosen],
            'finished_after': [u.name for u in study.units if u.name in users and unit_state(u) == 'done']}


def export_units(study: Study, archive: str, include_finished: bool = False, lean: bool = False) -> List[str]:
    """Pack the folders of unfinished units (``partial``: checkpoints and logs included) into an archive.

    Args:
        study: from `load_study`.
        archive: the ``.tar.gz`` to write (atomically).
        include_finished: pack finished units too.
        lean: pack finished units too, without the checkpoints (``.ckpt``, ``.pt``, ``.pth``, ``.safetensors``) that
            no unfinished unit's command names: their results and logs only, small enough to keep beside the study
            file in version control while the study outlasts its machines (unfinished units are packed whole).

    Returns:
        The units packed.
    """
    states = {u.name: unit_state(u) for u in study.units}
    units = [u for u in study.units
             if states[u.name] == 'partial' or ((include_finished or lean) and states[u.name] == 'done')]
    needed = {os.path.abspath(token) for u in study.units if states[u.name] != 'done' for token in u.command
              if os.path.abspath(token).startswith(os.path.abspath(study.out) + os.sep)}

    def spent(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
        path = os.path.abspath(os.path.join(study.out, info.name))
        unit = os.path.normpath(info.name).split(os.sep)[0]
        if os.path.basename(info.name) == SLURM_JOB_FILE:  # a job id means nothing on another machine
            return None
        if lean and states.get(unit) == 'done' and info.isfile() and info.name.endswith(_CHECKPOINT_SUFFIXES) \
                and path not in needed:
            return None
        return info

    tmp = archive + '.tmp'
    with tarfile.open(tmp, 'w:gz') as tar:
        for u in units:
            tar.add(u.dir, arcname=os.path.relpath(u.dir, study.out), filter=spent)
    os.replace(tmp, archive)
    return [u.name for u in units]


def import_units(study: Study, archive: str) -> List[str]:
    """Unpack an `export_units` archive into the study's folder. A unit already finished here is kept as it is
    (its folder in the archive is skipped); a unit folder not in the study is refused.

    Args:
        study: from `load_study`.
        archive: the ``.tar.gz``.

    Returns:
        The units unpacked.

    Raises:
        StudyError: no such archive, a member outside the study's units, or a member that is not a plain file.
    """
    if not os.path.isfile(archive):
        raise StudyError(f'no archive {archive}')
    names = {u.name: u for u in study.units}
    unpacked = set()
    with tarfile.open(archive, 'r:gz') as tar:
        members = list(_members(tar))
        for m in members:
            top = os.path.normpath(m.name).split(os.sep)[0]
            if top not in names:
                raise StudyError(f'{archive} holds {top!r}, which is not a unit of study {study.name!r}')
        keep = [m for m in members if unit_state(names[os.path.normpath(m.name).split(os.sep)[0]]) != 'done']
        tar.extractall(study.out, members=keep, filter='data')
        unpacked = {os.path.normpath(m.name).split(os.sep)[0] for m in keep}
    return sorted(unpacked)


def _portable_values(record: Dict[str, Any], unit: Unit) -> Dict[str, Any]:
    """Paths inside the study's folder written as ``{out}/...``, a published table naming no machine's folders: the
    study's root as this machine names it, and any absolute path through the unit's own folder (a run's
    ``run_dir``), wherever the unit ran (an imported unit names the folders of the machine that ran it)."""
    own = re.compile(r'^/.*?/(' + re.escape(unit.name) + r'(/.*)?)$')

    def portable(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        through = own.match(value)
        return '{out}/' + through.group(1) if through else _with_out(value, unit)
    return {k: portable(v) for k, v in record.items()}


def _unit_rows(unit: Unit, spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows one finished unit contributes to a published table, with its matrix keys as columns."""
    import pandas as pd
    path = os.path.join(unit.dir, spec['file'])
    if not os.path.isfile(path):
        raise StudyError(f'unit {unit.name} finished without {spec["file"]} (looked in {unit.dir})')
    if path.endswith(('.yaml', '.yml')):
        with open(path) as f:
            record = yaml.safe_load(f) or {}
        if not isinstance(record, dict):
            raise StudyError(f'{path}: a {type(record).__name__}, not a mapping of fields; a YAML unit file is published '
                             'as one row of its fields')
        # nested sections (a run's config.yaml) as dotted columns: optim.lr, model.gating (empty sections dropped)
        record = _portable_values(pd.json_normalize(record, sep='.').to_dict('records')[0] if record else {}, unit)
        columns = spec.get('columns') or {k: k for k in record}
        missing = [v for v in columns.values() if v not in record]
        if missing:
            raise StudyError(f'{path} has no {missing}; it has {", ".join(record)}')
        rows = [{k: record[v] for k, v in columns.items()}]
    else:
        frame = pd.read_csv(path)
        if spec.get('columns'):
            frame = frame.rename(columns={v: k for k, v in spec['columns'].items()})
        rows = frame.to_dict('records')
    for row in rows:
        for key in spec.get('percent') or []:
            row[key] = round(100 * float(row[key]), 4)
        for key, value in unit.keys.items():
            row.setdefault(key, value)
        for key, values in (spec.get('replace') or {}).items():
            if key in row and row[key] in values:
                row[key] = values[row[key]]
    return rows


def publish_study(study: Study, dest: str, folders: Optional[Sequence[str]] = None,
                  tables: bool = True) -> Dict[str, int]:
    """Gather the finished units' outputs into the study's published tables in ``dest`` (each written atomically):
    every table of the study file's ``publish:`` section (its name a path under ``dest``), one row per row of each
    matching unit's file (a CSV) or one row per unit (a YAML file, nested sections as dotted columns such as
    ``optim.lr``, a path inside the study's folder written as ``{out}/...``; ``columns`` picking and renaming its fields;
    ``percent`` turns fractions into percentages), with the unit's matrix values as columns (``from``: a glob of unit
    names or a list of them; ``replace``: ``{column: {value: new value}}``, e.g. to name a shared run as an ablation
    row; ``shared``: ``{table, where, units}``, rows another study published under ``dest`` before, e.g. the
    comparison's MogaNet-XT as the ablation's full row, with the units behind them); a file that is not a table (a
    figure) is copied from its one unit. ``units.csv`` (in each published folder, for the units behind its tables,
    shared ones included): each unit's command, minutes, the machine that ran it and whether it resumed. Then, when
    the study file says so, the declared claims are evaluated (``claims:``, see
    `moga_lab.studies.findings.evaluate_declared`: ``claims.csv`` in ``dest`` and in each study folder, the findings
    tables of the ``readme`` files) and each folder of ``reports:`` gets its report
    (`moga_lab.studies.report.seed_study_report`).

    ``folders`` publishes some of the study's folders (e.g. ``['compare']`` once its units are done, before those of
    ``ablation``): their tables and reports only; the claims are evaluated on whatever ``dest`` holds, a claim whose
    folder is not published yet being "not computed" (it stays in its family at p = 1, see
    `moga_lab.studies.claims.evaluate_registry`).

    Args:
        study: from `load_study`.
        dest: where the published folders go, e.g. ``docs/studies``.
        folders: the top folders of ``publish:`` / ``reports:`` to publish (default: all).
        tables: False leaves the published tables as they are (no unit is read) and only evaluates the claims and
            renders the reports again from them: a changed analysis, republished from the same data.

    Returns:
        ``{table: rows}`` of what was written.

    Raises:
        StudyError: a table's units are not all finished, or a finished unit lacks its file.
    """
    import pandas as pd
    from moga_lab.utils.atomic import atomic_write_csv
    written: Dict[str, int] = {}
    fed: Dict[str, set] = {}
    shared_records: Dict[str, list] = {}
    publish, reports = _select_folders(study, folders)
    for table, spec in (publish if tables else {}).items():
        patterns = [spec['from']] if isinstance(spec['from'], str) else list(spec['from'])
        units = [u for u in study.units if any(fnmatch.fnmatchcase(u.name, p) for p in patterns)]
        unfinished = [u.name for u in units if unit_state(u) != 'done']
        if not units or unfinished:
            raise StudyError(f'publish {table}: ' + (f'unfinished units {unfinished}' if units else
                                                     f'no unit matches {spec["from"]!r}'))
        fed.setdefault(os.path.dirname(table), set()).update(u.name for u in units)
        if not spec['file'].endswith(_TABLE_SUFFIXES):  # a figure (e.g. gradcam_grid.png): copied from its unit
            written[table] = _copy_unit_file(table, units, spec['file'], dest)
            continue
        rows = [row for u in units for row in _unit_rows(u, spec)]
        if spec.get('shared'):
            shared_rows, shared_units = _shared_rows(table, spec, dest)
            rows += shared_rows
            shared_records.setdefault(os.path.dirname(table), []).append(shared_units)
        atomic_write_csv(os.path.join(dest, table), pd.DataFrame(rows))
        written[table] = len(rows)
    # a finished unit ran the study file's command (else it is 'changed'): named with {out}, wherever it ran
    records = pd.DataFrame([{'unit': u.name, **u.keys, **{k: v for k, v in _record(u).items() if k != 'unit'},
                             'command': _portable_command(u)} for u in study.units
                            if tables and unit_state(u) == 'done'])
    for folder, names in fed.items():  # each published folder: the units behind its tables, and where they ran
        behind = [records[records.unit.isin(names)]] + shared_records.get(folder, [])
        behind = pd.concat(behind, ignore_index=True).drop_duplicates('unit')
        table = os.path.join(folder, 'units.csv')
        atomic_write_csv(os.path.join(dest, table), behind)
        written[table] = len(behind)
    if study.claims:
        from moga_lab.studies.findings import evaluate_declared
        table = evaluate_declared(study.claims['registry'], dest, study.claims.get('readme') or ())
        written['claims.csv'] = len(table)
    for folder, spec in reports.items():
        from moga_lab.studies.report import seed_study_report
        seed_study_report(os.path.join(dest, folder), **spec)
        written[os.path.join(folder, 'report.md')] = 1
    return written


def _shared_rows(table: str, spec: Dict[str, Any], dest: str):
    """The rows a table takes from one another study already published under ``dest`` (``shared:``: a run two
    studies share, e.g. an ablation's full row that is the comparison's model), with ``replace`` applied, and the
    rows of that study's ``units.csv`` behind them."""
    import pandas as pd
    shared = spec['shared']
    path = os.path.join(dest, shared['table'])
    if not os.path.isfile(path):
        raise StudyError(f'publish {table}: it shares rows of {shared["table"]}, which is not published in {dest} '
                         'yet; publish the study that makes it first')
    frame = pd.read_csv(path)
    for column, value in (shared.get('where') or {}).items():
        if column not in frame.columns:
            raise StudyError(f'publish {table}: {path} has no column {column!r}; it has {", ".join(frame.columns)}')
        frame = frame[frame[column].astype(str) == str(value)]
    if frame.empty:
        raise StudyError(f'publish {table}: no row of {path} has {shared.get("where")}')
    for column, values in (spec.get('replace') or {}).items():
        if column in frame.columns:
            frame[column] = frame[column].replace(values)
    units = pd.DataFrame()
    listed = os.path.join(os.path.dirname(path), 'units.csv')
    if shared.get('units'):
        if not os.path.isfile(listed):
            raise StudyError(f'publish {table}: shared units {shared["units"]!r} are listed in {listed}, which is not '
                             'there; publish the study that makes it first')
        units = pd.read_csv(listed)
        units = units[units.unit.map(lambda name: fnmatch.fnmatchcase(str(name), shared['units']))]
        for column, values in (spec.get('replace') or {}).items():
            if column in units.columns:
                units[column] = units[column].replace(values)
    return frame.to_dict('records'), units


def _top_folder(path: str) -> str:
    return path.replace(os.sep, '/').split('/')[0] if '/' in path.replace(os.sep, '/') else ''


def _select_folders(study: Study, folders: Optional[Sequence[str]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The ``publish:`` tables and ``reports:`` of the named top folders (all of them without ``folders``)."""
    if not folders:
        return study.publish, study.reports
    known = sorted({_top_folder(t) for t in study.publish} - {''} | set(study.reports))
    unknown = [f for f in folders if f.strip('/') not in known]
    if unknown:
        raise StudyError(f'publish: folder(s) {unknown} are not in the study file; accepted: {", ".join(known)}')
    wanted = {f.strip('/') for f in folders}
    return ({t: spec for t, spec in study.publish.items() if _top_folder(t) in wanted},
            {f: spec for f, spec in study.reports.items() if f in wanted})


def _copy_unit_file(table: str, units: List[Unit], name: str, dest: str) -> int:
    if len(units) != 1:
        raise StudyError(f'publish {table}: {name} is copied from one unit; "from" matches {len(units)}')
    source = os.path.join(units[0].dir, name)
    if not os.path.isfile(source):
        raise StudyError(f'unit {units[0].name} finished without {name} (looked in {units[0].dir})')
    target = os.path.join(dest, table)
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    shutil.copyfile(source, target + '.tmp')
    os.replace(target + '.tmp', target)  # (atomic: a reader never sees half a figure)
    return 1
