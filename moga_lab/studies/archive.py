"""Moving a study between machines: `export_units` packs unit folders into an archive (unfinished ones whole; with
``lean``, finished ones without spent checkpoints), `import_units` unpacks one, refusing anything that is not a plain
file inside the study's units."""
import os
import tarfile
from typing import List, Optional

from moga_lab.studies.spec import CHECKPOINT_SUFFIXES, SLURM_JOB_FILE, Study, StudyError
from moga_lab.studies.state import unit_state

__all__ = ['export_units', 'import_units']


def _members(tar: tarfile.TarFile):
    for m in tar.getmembers():
        path = os.path.normpath(m.name)
        if path.startswith('..') or os.path.isabs(path) or not (m.isfile() or m.isdir()):
            raise StudyError(f'archive member {m.name!r} is not a plain file inside the study; refused')
        yield m


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
        if lean and states.get(unit) == 'done' and info.isfile() and info.name.endswith(CHECKPOINT_SUFFIXES) \
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
