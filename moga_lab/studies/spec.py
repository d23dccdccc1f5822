"""A study file, read and checked: its units (command lines with their folders, matrices, order and estimates) and
its ``publish:``, ``reports:`` and ``claims:`` sections. The format is `moga_lab.studies.runner`'s."""
import fnmatch
import importlib.util
import itertools
import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

from moga_lab.utils.schema import check_mapping

__all__ = ['StudyError', 'Unit', 'Study', 'load_study', 'executable', 'select_units', 'DONE_FILE', 'LOG_FILE',
           'SLURM_JOB_FILE', 'COMMAND_FILE', 'TABLE_SUFFIXES', 'CHECKPOINT_SUFFIXES']

DONE_FILE = 'unit.yaml'
"""Written into a unit's folder, atomically, once its command exited with status 0: the unit is finished."""
LOG_FILE = 'unit.log'
"""A unit's stdout and stderr, appended on every (re)start."""
SLURM_JOB_FILE = 'slurm.job'
"""A unit submitted to Slurm: its job id, so that a later ``run`` watches that job while Slurm still lists it instead
of submitting the unit again beside it (a runner stopped on the login node leaves its jobs running)."""
COMMAND_FILE = 'unit.command'
"""The command line a unit was first started with: a later study file that changes it marks the unit ``changed``."""
TABLE_SUFFIXES = ('.csv', '.yaml', '.yml')
"""Unit files `moga_lab.studies.publish.publish_study` gathers into tables (any other file is copied as it is)."""
CHECKPOINT_SUFFIXES = ('.ckpt', '.pt', '.pth', '.safetensors')
"""Files a lean export leaves out of finished units."""
_UNIT_KEYS = {'name', 'command', 'matrix', 'after', 'minutes', 'resume', 'threads'}
_PUBLISH_KEYS = {'from', 'file', 'columns', 'percent', 'replace', 'shared'}
_SHARED_KEYS = {'table', 'where', 'units'}
_STUDY_KEYS = {'name', 'out', 'units', 'publish', 'reports', 'claims'}
_REPORT_KEYS = {'title', 'reference', 'design', 'noun'}
_CLAIMS_KEYS = {'registry', 'readme'}


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
        return executable(self.command + (self.resume_args if resume else []))


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


def executable(argv: List[str]) -> List[str]:
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
    check_mapping(entry, where, _UNIT_KEYS, error=StudyError)
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
    check_mapping(raw, path, _STUDY_KEYS, error=StudyError)
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


def _section(raw: Dict[str, Any], path: str, name: str, required: Sequence[str], keys: set,
             needs: str) -> Dict[str, Dict[str, Any]]:
    """A study file's ``name:`` section (entry -> settings), each entry checked for its required and known keys."""
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        raise StudyError(f'{path}: {name} is a {type(section).__name__}; accepted: a mapping (entry: settings)')
    for entry, spec in section.items():
        if not isinstance(spec, dict) or not all(spec.get(k) for k in required):
            raise StudyError(f'{path}: {name}.{entry} needs {needs}')
        check_mapping(spec, f'{path}: {name}.{entry}', keys, error=StudyError)
    return section


def select_units(study: Study, only: Optional[Sequence[str]], option: str = '--only') -> List[Unit]:
    """The units whose names match one of the globs ``only`` (all when None); a StudyError names a glob matching none."""
    if not only:
        return list(study.units)
    chosen = [u for u in study.units if any(fnmatch.fnmatchcase(u.name, p) for p in only)]
    if not chosen:
        raise StudyError(f'{option} {" ".join(only)} matches no unit; units: {", ".join(u.name for u in study.units)}')
    return chosen
