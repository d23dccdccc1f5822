"""Publishing a study: its finished units' outputs gathered into tables (`publish_study`), the declared claims
evaluated on them and each published folder's report rendered."""
import fnmatch
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from moga_lab.studies.spec import TABLE_SUFFIXES, Study, StudyError, Unit
from moga_lab.studies.state import portable_command, read_record, unit_state, with_out

__all__ = ['publish_study']


def _portable_values(record: Dict[str, Any], unit: Unit) -> Dict[str, Any]:
    """Paths inside the study's folder written as ``{out}/...``, a published table naming no machine's folders: the
    study's root as this machine names it, and any absolute path through the unit's own folder (a run's
    ``run_dir``), wherever the unit ran (an imported unit names the folders of the machine that ran it)."""
    own = re.compile(r'^/.*?/(' + re.escape(unit.name) + r'(/.*)?)$')

    def portable(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        through = own.match(value)
        return '{out}/' + through.group(1) if through else with_out(value, unit)
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
        if not spec['file'].endswith(TABLE_SUFFIXES):  # a figure (e.g. gradcam_grid.png): copied from its unit
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
    records = pd.DataFrame([{'unit': u.name, **u.keys, **{k: v for k, v in read_record(u).items() if k != 'unit'},
                             'command': portable_command(u)} for u in study.units
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
