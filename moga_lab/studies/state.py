"""The state of a study's units, read from their folders: finished (with which command, how long, where), changed,
partial or pending; the pace ``--until`` plans with; removing units' folders (``reset``)."""
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
from typing import Any, Dict, List, Optional, Sequence, Set, cast

import yaml

from moga_lab.studies.spec import (COMMAND_FILE, DONE_FILE, LOG_FILE, SLURM_JOB_FILE, Study, StudyError, Unit,
                                   select_units)
from moga_lab.utils.atomic import atomic_write_text
from moga_lab.utils.runtime import describe_machine

__all__ = ['unit_state', 'with_out', 'portable_command', 'recorded_command', 'read_record', 'write_record',
           'study_status', 'paced_minutes', 'parse_deadline', 'queued_slurm_job', 'refuse_queued', 'reset_units']

# squeue states of a job that has not ended (a requeued job keeps its id)
_SLURM_LIVE = {'PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED',
               'RESIZING', 'SUSPENDED', 'STOPPED', 'SIGNALING', 'STAGE_OUT'}


def unit_state(unit: Unit) -> str:
    """``done`` (finished with the command the study file gives now), ``changed`` (finished, or started, with
    another command: its outputs are of another recipe), ``partial`` (its folder holds something to resume from, or
    at least a started log) or ``pending`` (never started).

    Args:
        unit: a unit of a loaded study.
    """
    recorded = recorded_command(unit)
    if recorded is not None and recorded != portable_command(unit):
        return 'changed'
    if os.path.isfile(os.path.join(unit.dir, DONE_FILE)):
        return 'done'
    if unit.resume_if and os.path.exists(os.path.join(unit.dir, unit.resume_if)):
        return 'partial'
    return 'partial' if os.path.isfile(os.path.join(unit.dir, LOG_FILE)) else 'pending'


def with_out(text: str, unit: Unit) -> str:
    """``text`` with the study's output root (as the study names it, and absolute) written ``{out}``."""
    root = os.path.dirname(unit.dir)
    for form in sorted({root, os.path.abspath(root)}, key=len, reverse=True):
        text = text.replace(form, '{out}')
    return text


def portable_command(unit: Unit) -> str:
    """The unit's command with the study's output root written as ``{out}``: a study moved to another folder (or
    machine) keeps its units' identity."""
    return with_out(shlex.join(unit.command), unit)


def recorded_command(unit: Unit) -> Optional[str]:
    """The command line a unit was started with (written before its first run), or None if it never started."""
    path = os.path.join(unit.dir, COMMAND_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()


def read_record(unit: Unit) -> Dict[str, Any]:
    """A finished unit's record (``unit.yaml``): its command, minutes, machine, when it finished, whether it resumed."""
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
        record = read_record(u) if states[u.name] == 'done' else {}
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
    machine, ratios = describe_machine(), cast(Dict[int, List[float]], {})
    for u in study.units:
        record = read_record(u) if unit_state(u) == 'done' and u.minutes > 0 else {}
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


def queued_slurm_job(unit: Unit) -> Optional[str]:
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


def refuse_queued(units: Sequence[Unit], action: str) -> None:
    """A StudyError naming the units whose Slurm jobs still run (removing such a folder would let the next ``run``
    submit the unit beside its job)."""
    queued = {u.name: job for u in units for job in [queued_slurm_job(u)] if job}
    if queued:
        raise StudyError(f'{action}: {", ".join(f"{n} (job {j})" for n, j in queued.items())} still queued or '
                         f'running on Slurm; scancel {" ".join(queued.values())} first')


def write_record(unit: Unit, seconds: float, resumed: bool) -> None:
    """Mark a unit finished: its record, written atomically (a stopped runner never leaves a half-written one)."""
    atomic_write_text(os.path.join(unit.dir, DONE_FILE), yaml.safe_dump(dict(
        unit=unit.name, command=portable_command(unit), minutes=round(seconds / 60, 2), machine=describe_machine(),
        finished=dt.datetime.now().isoformat(timespec='seconds'), resumed=resumed), sort_keys=False))


def reset_units(study: Study, patterns: Sequence[str]) -> Dict[str, List[str]]:
    """Remove the folders of the units matching ``patterns`` (any state), so that the next ``run`` starts them
    clean: for a unit whose outputs turned out wrong (a bug fixed since, an input replaced).

    Args:
        study: from `moga_lab.studies.spec.load_study`.
        patterns: unit names or globs.

    Returns:
        ``{'reset': [...], 'finished_after': [...]}``: the units reset, and finished units that use their outputs
        (they are kept; reset them too if those outputs will change).
    """
    chosen = select_units(study, patterns, option='reset')
    refuse_queued(chosen, 'reset')
    names = {u.name for u in chosen}
    for u in chosen:
        if os.path.isdir(u.dir):
            shutil.rmtree(u.dir)
    users, grew = cast(Set[str], set()), True
    while grew:  # everything downstream, not only direct users
        grew = False
        for u in study.units:
            if u.name not in users and u.name not in names and any(a in names | users for a in u.after):
                users.add(u.name)
                grew = True
    return {'reset': [u.name for u in chosen],
            'finished_after': [u.name for u in study.units if u.name in users and unit_state(u) == 'done']}
