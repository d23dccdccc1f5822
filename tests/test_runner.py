"""moga_lab.studies.runner: units are skipped when finished, resumed when stopped, held back by a deadline, ordered
by their inputs, listed by status, and moved between machines by export/import."""
import datetime as dt
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest
import yaml

from moga_lab.cli import study as study_cli
from moga_lab.studies.runner import (StudyError, export_units, import_units, load_study, paced_minutes, parse_deadline,
                                     publish_study, run_study, study_status, unit_state)

# a "training" that counts to 3 in steps, keeps its progress in state.txt (its last.ckpt) and continues from it when
# given --resume; STOP_AT makes it die after that step (a stopped job)
STEP = textwrap.dedent('''
    import os, sys
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    state = os.path.join(folder, 'state.txt')
    start = int(open(state).read()) if '--resume' in sys.argv else 0
    for k in range(start + 1, 4):
        open(state, 'w').write(str(k))
        open(os.path.join(folder, 'steps.txt'), 'a').write(f'{k}\\n')
        if os.environ.get('STOP_AT') == str(k):
            sys.exit(3)
    open(os.path.join(folder, 'result.txt'), 'w').write(open(os.path.join(folder, 'steps.txt')).read())
''')


def _write_study(tmp_path, units, extra=''):
    """Write study.yaml for a toy study: its units (YAML list items, any common indent) write under tmp_path/runs;
    extra is appended as it is (more units indented by two, or top-level keys)."""
    spec = tmp_path / 'study.yaml'
    spec.write_text(f"name: toy\nout: {tmp_path / 'runs'}\nunits:\n"
                    + textwrap.indent(textwrap.dedent(units).strip('\n'), '  ') + '\n' + extra)
    return spec


def _writes(script, files):
    """A toy unit's command: ``python SCRIPT DIR`` writes ``files`` (name -> text) into DIR."""
    script.write_text('import sys, os\nd = sys.argv[1]\nos.makedirs(d, exist_ok=True)\n' + ''.join(
        f'open(os.path.join(d, {name!r}), "w").write({text!r})\n' for name, text in files.items()))


def _study(tmp_path, minutes=1, extra=''):
    (tmp_path / 'step.py').write_text(STEP)
    return _write_study(tmp_path, f'''
        - name: fit-s{{seed}}
          matrix: {{seed: [0, 1]}}
          command: python {tmp_path / 'step.py'} {{dir}}
          resume: {{if_exists: state.txt, args: --resume}}
          minutes: {minutes}
        - name: report
          after: [fit-s0, fit-s1]
          command: python -c "print('report')"
          minutes: 0
    ''', extra)


def test_units_run_in_order_and_finished_ones_are_skipped(tmp_path):
    study = load_study(str(_study(tmp_path)))
    assert [u.name for u in study.units] == ['fit-s0', 'fit-s1', 'report']
    result = run_study(study, log=lambda line: None)
    assert result == {'done': ['fit-s0', 'fit-s1', 'report'], 'failed': [], 'skipped': []}
    assert (tmp_path / 'runs' / 'fit-s0' / 'result.txt').read_text() == '1\n2\n3\n'
    record = yaml.safe_load((tmp_path / 'runs' / 'fit-s0' / 'unit.yaml').read_text())
    assert record['unit'] == 'fit-s0' and record['resumed'] is False and 'cores' in record['machine']
    again = run_study(load_study(str(_study(tmp_path))), log=lambda line: None)
    assert again == {'done': [], 'failed': [], 'skipped': []}          # nothing runs twice
    assert (tmp_path / 'runs' / 'fit-s0' / 'steps.txt').read_text() == '1\n2\n3\n'


def test_a_stopped_unit_resumes_and_its_dependents_wait(tmp_path, monkeypatch):
    study = load_study(str(_study(tmp_path)))
    monkeypatch.setenv('STOP_AT', '2')
    first = run_study(study, only=['fit-s0', 'report'], log=lambda line: None)
    assert first['failed'] == ['fit-s0'] and first['skipped'] == ['report']
    assert unit_state(study.unit('fit-s0')) == 'partial' and unit_state(study.unit('report')) == 'pending'
    monkeypatch.delenv('STOP_AT')
    second = run_study(study, log=lambda line: None)
    assert second['done'] == ['fit-s0', 'fit-s1', 'report']
    # steps 1-2 before the stop, then 3 on resume: nothing repeated, nothing lost
    assert (tmp_path / 'runs' / 'fit-s0' / 'result.txt').read_text() == '1\n2\n3\n'
    assert yaml.safe_load((tmp_path / 'runs' / 'fit-s0' / 'unit.yaml').read_text())['resumed'] is True


def test_the_deadline_starts_no_unit_that_cannot_finish(tmp_path):
    study = load_study(str(_study(tmp_path, minutes=30)))
    soon = dt.datetime.now() + dt.timedelta(minutes=20)
    result = run_study(study, until=soon, log=lambda line: None)
    assert result['done'] == [] and result['skipped'] == ['fit-s0', 'fit-s1', 'report']
    # the clock, not the sum of estimates, decides: each unit is checked when it would start
    later = dt.datetime.now() + dt.timedelta(minutes=31)
    result = run_study(study, until=later, only=['fit-s0'], log=lambda line: None)
    assert result['done'] == ['fit-s0']
    study.unit('fit-s1').minutes = 60
    # fit-s0 finished here in seconds of its 30 estimated minutes: its entry's units are planned at that pace (on this
    # machine class, from a unit that ran in one go), so fit-s1 starts though its estimate alone would end too late
    record_file = tmp_path / 'runs' / 'fit-s0' / 'unit.yaml'
    record = dict(yaml.safe_load(record_file.read_text()), minutes=0.5)   # its seconds, rounded up to be read
    for other in (dict(record, machine='another CPU, 2 cores'), dict(record, resumed=True)):
        record_file.write_text(yaml.safe_dump(other))
        assert paced_minutes(study)['fit-s1'] == 60
        assert run_study(study, until=later, dry_run=True, log=lambda line: None)['skipped'] == ['fit-s1', 'report']
    record_file.write_text(yaml.safe_dump(record))
    assert paced_minutes(study)['fit-s1'] == pytest.approx(60 * 0.5 / 30)
    lines = []
    assert run_study(study, until=later, log=lines.append)['done'] == ['fit-s1', 'report']
    assert 'at the pace of the units finished on this machine' in lines[0], lines[0]


def test_parse_deadline():
    now = dt.datetime(2026, 1, 1, 12, 0)
    assert parse_deadline('13:30', now) == dt.datetime(2026, 1, 1, 13, 30)
    assert parse_deadline('11:00', now) == dt.datetime(2026, 1, 2, 11, 0)   # already past: tomorrow's
    with pytest.raises(StudyError, match="'25:00' is not a time; accepted: HH:MM"):
        parse_deadline('25:00', now)


def test_export_and_import_move_unfinished_units(tmp_path, monkeypatch):
    here = load_study(str(_study(tmp_path)))
    monkeypatch.setenv('STOP_AT', '1')
    run_study(here, only=['fit-s0'], log=lambda line: None)
    monkeypatch.delenv('STOP_AT')
    run_study(here, only=['fit-s1'], log=lambda line: None)
    archive = str(tmp_path / 'carry.tar.gz')
    assert export_units(here, archive) == ['fit-s0']                  # only what is unfinished
    with tarfile.open(archive) as tar:
        assert 'fit-s0/state.txt' in tar.getnames()
    there = load_study(str(_study(tmp_path)), out=str(tmp_path / 'elsewhere'))
    assert import_units(there, archive) == ['fit-s0']
    assert unit_state(there.unit('fit-s0')) == 'partial'
    assert run_study(there, only=['fit-s0'], log=lambda line: None)['done'] == ['fit-s0']
    assert (tmp_path / 'elsewhere' / 'fit-s0' / 'result.txt').read_text() == '1\n2\n3\n'
    rows = {r['unit']: r for r in study_status(there)}
    assert rows['fit-s0']['state'] == 'done' and rows['report']['waits_for'] == ['fit-s1']


def test_a_lean_export_keeps_results_and_only_the_checkpoints_still_needed(tmp_path):
    """What a study keeps in version control between machines: finished units' results, and a checkpoint only where
    an unfinished unit's command reads it."""
    _writes(tmp_path / 'fit.py', {'best.ckpt': 'w' * 4096, 'results.yaml': 'acc: 0.9\n'})
    (tmp_path / 'curves.py').write_text('import sys, os\nassert os.path.isfile(sys.argv[1])\n'
                                        'os.makedirs(sys.argv[2], exist_ok=True)\n'
                                        'open(os.path.join(sys.argv[2], "c.csv"), "w").write("x\\n1\\n")\n')
    spec = _write_study(tmp_path, f'''
        - name: fit-s{{seed}}
          matrix: {{seed: [0, 1]}}
          command: python {tmp_path / 'fit.py'} {{dir}}
        - name: curves-s{{seed}}
          matrix: {{seed: [0, 1]}}
          after: ["fit-s{{seed}}"]
          command: python {tmp_path / 'curves.py'} {{out}}/fit-s{{seed}}/best.ckpt {{dir}}
    ''')
    here = load_study(str(spec))
    run_study(here, only=['fit-s0', 'fit-s1', 'curves-s0'], log=lambda line: None)
    archive = str(tmp_path / 'study.state.tar.gz')
    assert export_units(here, archive, lean=True) == ['fit-s0', 'fit-s1', 'curves-s0']
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert 'fit-s0/results.yaml' in names and 'fit-s0/unit.yaml' in names and 'curves-s0/c.csv' in names
    assert 'fit-s0/best.ckpt' not in names          # its curves are done: nothing reads it any more
    assert 'fit-s1/best.ckpt' in names              # curves-s1 still reads it
    there = load_study(str(spec), out=str(tmp_path / 'elsewhere'))
    assert import_units(there, archive) == ['curves-s0', 'fit-s0', 'fit-s1']
    assert [unit_state(u) for u in there.units] == ['done', 'done', 'done', 'pending']
    assert run_study(there, log=lambda line: None)['done'] == ['curves-s1']
    assert export_units(here, str(tmp_path / 'all.tar.gz'), include_finished=True)[:2] == ['fit-s0', 'fit-s1']
    with tarfile.open(str(tmp_path / 'all.tar.gz')) as tar:
        assert 'fit-s0/best.ckpt' in tar.getnames()   # without --lean, everything


def test_import_refuses_foreign_and_escaping_members(tmp_path):
    study = load_study(str(_study(tmp_path)))
    bad = tmp_path / 'bad.tar.gz'
    (tmp_path / 'x.txt').write_text('x')
    with tarfile.open(bad, 'w:gz') as tar:
        tar.add(tmp_path / 'x.txt', arcname='../x.txt')
    with pytest.raises(StudyError, match="'../x.txt' is not a plain file inside the study"):
        import_units(study, str(bad))
    with tarfile.open(bad, 'w:gz') as tar:
        tar.add(tmp_path / 'x.txt', arcname='other-unit/x.txt')
    with pytest.raises(StudyError, match="holds 'other-unit', which is not a unit"):
        import_units(study, str(bad))


@pytest.mark.parametrize('body, message', [
    ('units: []', 'needs a list "units:"'),
    ('units: [{name: a}]', "no 'command'"),
    ('units: [{name: a, command: x, colour: red}]', "unknown keys ['colour']"),
    ('units: [{name: "a{seed}", command: x}]', '{seed} is not a matrix name'),
    ('units: [{name: a, command: x, after: [b]}]', "comes after ['b']"),
    ('units: [{name: a, command: x}, {name: a, command: y}]', "repeated: ['a']"),
    ('units: [{name: a, command: x, minutes: -1}]', 'minutes=-1'),
    ('units: [{name: a, command: x}]\nreport: {}', "unknown keys ['report']; accepted: claims, name, out, publish"),
    ('units: [{name: a, command: x}]\nreports: {compare: {title: t}}', 'reports.compare needs "title" and "reference"'),
    ('units: [{name: a, command: x}]\nreports: {c: {title: t, reference: m, colour: red}}', "unknown keys ['colour']"),
    ('units: [{name: a, command: x}]\nclaims: {readme: [R.md]}', 'accepted: {registry: FILE, readme: [FILE, ...]}'),
    ('units: [{name: "a{m}", command: x, matrix: {m: [p, q]}, minutes: {m: {p: 3}}}]', "minutes={'m': {'p': 3}}"),
    ('units: [{name: a, command: x}]\npublish: [tables]', 'publish is a list; accepted: a mapping (entry: settings)'),
    ('units: [{name: a, command: x}]\nreports: compare', 'reports is a str; accepted: a mapping (entry: settings)'),
])
def test_bad_study_files_are_named_in_one_line(tmp_path, body, message):
    path = tmp_path / 's.yaml'
    path.write_text(body)
    with pytest.raises(StudyError) as error:
        load_study(str(path))
    assert message in str(error.value) and '\n' not in str(error.value)


def test_the_command_line(tmp_path, capsys):
    spec = str(_study(tmp_path))
    assert study_cli.main(['run', spec, '--only', 'fit-s1']) == 0
    assert study_cli.main(['status', spec]) == 0
    out = capsys.readouterr().out
    assert 'fit-s1' in out and 'done' in out and '1 done, 0 partial, 0 changed, 2 pending' in out
    with pytest.raises(SystemExit) as stop:
        study_cli.main(['run', spec, '--until', 'soon'])
    assert stop.value.code == 2
    assert "--until 'soon' is not a time" in capsys.readouterr().err


@pytest.mark.slow  # submitit processes
def test_local_executor_runs_units_as_submitit_jobs(tmp_path):
    study = load_study(str(_study(tmp_path)))
    result = run_study(study, executor='local', concurrency=2, log=lambda line: None)
    assert sorted(result['done']) == ['fit-s0', 'fit-s1', 'report'] and result['failed'] == []
    assert os.path.isfile(tmp_path / 'runs' / 'report' / 'unit.yaml')
    assert sys.executable  # (the units ran with this interpreter: python -> sys.executable)


@pytest.mark.slow  # submitit processes
@pytest.mark.parametrize('executor', ['inline', 'local'])
def test_a_failed_unit_is_reported_with_its_own_error_line(tmp_path, executor):
    (tmp_path / 'bad.py').write_text("import sys; print('working'); sys.exit('error: --size 7 is not accepted')")
    (tmp_path / 'silent.py').write_text("import sys; sys.exit(3)")
    extra = f'''
  - name: broken
    command: python {tmp_path / 'bad.py'}
    minutes: 0
  - name: silent
    command: python {tmp_path / 'silent.py'}
    minutes: 0
'''
    lines = []
    result = run_study(load_study(str(_study(tmp_path, extra=extra))), executor=executor, only=['broken', 'silent'],
                       log=lines.append)
    assert sorted(result['failed']) == ['broken', 'silent']
    failed = {ln.split(':')[0].split()[-1]: ln for ln in lines if 'FAILED' in ln}
    assert 'unit.log: error: --size 7 is not accepted' in failed['broken'], lines
    # a command that printed nothing: its exit code, not the executor's own trace
    assert ('exited with 3 and printed nothing' if executor == 'local' else '(exit 3)') in failed['silent'], lines
    assert 'Job (task=0)' not in failed['silent']


def test_publish_gathers_finished_units_with_their_matrix_values(tmp_path):
    extra = textwrap.dedent('''
        publish:
          steps.csv: {from: "fit-*", file: result.csv}
          results.csv: {from: ["fit-s0", "fit-s1"], file: result.yaml, columns: {top1: acc}, percent: [top1],
                        replace: {seed: {1: 10}}}
          one/figure.png: {from: fit-s1, file: figure.png}
          configs.csv: {from: "fit-*", file: config.yaml}
    ''')
    _writes(tmp_path / 'write.py', {'result.csv': 'step,loss\n1,0.5\n2,0.25\n', 'result.yaml': 'acc: 0.875\n'})
    with open(tmp_path / 'write.py', 'a') as f:   # a figure that says which unit made it
        f.write('open(os.path.join(d, "figure.png"), "wb").write(d[-1].encode() * 4)\n')
        f.write('open(os.path.join(d, "config.yaml"), "w").write("optim: {lr: 0.004}\\ntrainer: {seed: 1, run_dir: "'
                ' + os.path.abspath(d) + "}\\nextra: {}\\n")\n')   # a run's config: nested, naming its folder
    spec = _write_study(tmp_path, f'''
        - name: fit-s{{seed}}
          matrix: {{seed: [0, 1]}}
          command: python {tmp_path / 'write.py'} {{dir}}
    ''', extra)
    study = load_study(str(spec))
    with pytest.raises(StudyError, match="unfinished units \\['fit-s0', 'fit-s1'\\]"):
        publish_study(study, str(tmp_path / 'pub'))
    run_study(study, log=lambda line: None)
    assert publish_study(study, str(tmp_path / 'pub')) == {'steps.csv': 4, 'results.csv': 2, 'one/figure.png': 1,
                                                           'configs.csv': 2, 'units.csv': 2, 'one/units.csv': 1}
    assert (tmp_path / 'pub' / 'one' / 'figure.png').read_bytes() == b'1111'   # copied from its one unit
    import pandas as pd
    steps = pd.read_csv(tmp_path / 'pub' / 'steps.csv')
    assert steps.columns.tolist() == ['step', 'loss', 'seed'] and steps.seed.tolist() == [0, 0, 1, 1]
    results = pd.read_csv(tmp_path / 'pub' / 'results.csv')
    assert results.to_dict('list') == {'top1': [87.5, 87.5], 'seed': [0, 10]}
    configs = pd.read_csv(tmp_path / 'pub' / 'configs.csv')   # sections as columns; the folder as the study names it
    assert configs.to_dict('list') == {'optim.lr': [0.004, 0.004], 'trainer.seed': [1, 1],   # (empty sections: none)
                                       'trainer.run_dir': ['{out}/fit-s0', '{out}/fit-s1'], 'seed': [0, 1]}
    units = pd.read_csv(tmp_path / 'pub' / 'units.csv')
    assert units.unit.tolist() == ['fit-s0', 'fit-s1'] and 'cores' in units.machine.iloc[0]
    # the commands name the units' folders as the study file does, not by this machine's paths
    assert units.command.iloc[0].endswith('write.py {out}/fit-s0'), units.command.iloc[0]
    assert not units.command.str.contains(str(tmp_path / 'runs')).any()
    # and so does each unit's record: an exported study published on another machine names no folder of this one
    record_file = tmp_path / 'runs' / 'fit-s0' / 'unit.yaml'
    assert yaml.safe_load(record_file.read_text())['command'].endswith('{out}/fit-s0')
    record = yaml.safe_load(record_file.read_text())  # a record written elsewhere with that machine's folder
    record_file.write_text(yaml.safe_dump(dict(record, command=record['command'].replace('{out}', '/elsewhere/runs'))))
    config_file = tmp_path / 'runs' / 'fit-s0' / 'config.yaml'   # and so was its config (its run folder there)
    config_file.write_text('optim: {lr: 0.004}\ntrainer: {seed: 1, run_dir: /elsewhere/runs/fit-s0}\n')
    publish_study(study, str(tmp_path / 'pub'))
    assert not pd.read_csv(tmp_path / 'pub' / 'units.csv').command.str.contains('/elsewhere').any()
    assert pd.read_csv(tmp_path / 'pub' / 'configs.csv')['trainer.run_dir'].tolist() == ['{out}/fit-s0', '{out}/fit-s1']
    (tmp_path / 'runs' / 'fit-s1' / 'result.yaml').write_text('- 0.875\n')
    with pytest.raises(StudyError, match=r'result.yaml: a list, not a mapping of fields'):
        publish_study(study, str(tmp_path / 'pub'))
    assert pd.read_csv(tmp_path / 'pub' / 'one' / 'units.csv').unit.tolist() == ['fit-s1']  # the units behind it


def test_publish_one_folder_while_another_folders_units_still_run(tmp_path):
    _writes(tmp_path / 'write.py', {'result.csv': 'step,loss\n1,0.5\n'})
    spec = _write_study(tmp_path, f'''
        - name: early
          command: python {tmp_path / 'write.py'} {{dir}}
        - name: late
          command: python {tmp_path / 'write.py'} {{dir}}
    ''', textwrap.dedent('''
        publish:
          first/steps.csv: {from: early, file: result.csv}
          second/steps.csv: {from: late, file: result.csv}
    '''))
    study = load_study(str(spec))
    run_study(study, only=['early'], log=lambda line: None)
    with pytest.raises(StudyError, match="unfinished units \\['late'\\]"):
        publish_study(study, str(tmp_path / 'pub'))
    written = publish_study(study, str(tmp_path / 'pub'), ['first'])
    assert written == {'first/steps.csv': 1, 'first/units.csv': 1}
    assert not (tmp_path / 'pub' / 'second').exists()
    with pytest.raises(StudyError, match=r"\['third'\] are not in the study file; accepted: first, second"):
        publish_study(study, str(tmp_path / 'pub'), ['third'])
    # a changed analysis of the same data: no unit is read and no published table rewritten (the unfinished 'late'
    # unit does not stop it, and a unit's folder may be long gone)
    before = (tmp_path / 'pub' / 'first' / 'steps.csv').read_bytes()
    import shutil
    shutil.rmtree(tmp_path / 'runs' / 'early')
    assert publish_study(study, str(tmp_path / 'pub'), tables=False) == {}
    assert (tmp_path / 'pub' / 'first' / 'steps.csv').read_bytes() == before


def test_a_table_shares_rows_another_study_published(tmp_path):
    """An ablation's full row is the comparison's model: its rows (and the units behind them) come from the
    comparison's published table, not from a second training."""
    import pandas as pd
    _writes(tmp_path / 'write.py', {'r.csv': 'share\n0.5\n'})
    pub = tmp_path / 'pub'
    (pub / 'compare').mkdir(parents=True)
    pd.DataFrame(dict(share=[0.25, 0.75, 0.1], model=['xt', 'xt', 'atto'], seed=[0, 1, 0])).to_csv(
        pub / 'compare' / 't.csv', index=False)
    pd.DataFrame(dict(unit=['fit-xt-s0', 'fit-xt-s1', 'fit-atto-s0', 'sweep-xt'], model=['xt', 'xt', 'atto', 'xt'],
                      machine=['AMD EPYC (AVX2), 2 cores'] * 4)).to_csv(pub / 'compare' / 'units.csv', index=False)
    spec = _write_study(tmp_path, f'''
        - name: fit-{{model}}-s{{seed}}
          matrix: {{model: [no_ca], seed: [0]}}
          command: python {tmp_path / 'write.py'} {{dir}}
    ''', textwrap.dedent('''
        publish:
          ablation/t.csv:
            from: "fit-*"
            file: r.csv
            shared: {table: compare/t.csv, where: {model: xt}, units: "fit-xt-*"}
            replace: {model: {xt: full}}
    '''))
    study = load_study(str(spec))
    run_study(study, log=lambda line: None)
    assert publish_study(study, str(pub)) == {'ablation/t.csv': 3, 'ablation/units.csv': 3}
    table = pd.read_csv(pub / 'ablation' / 't.csv')
    assert table.to_dict('list') == {'share': [0.5, 0.25, 0.75], 'model': ['no_ca', 'full', 'full'], 'seed': [0, 0, 1]}
    units = pd.read_csv(pub / 'ablation' / 'units.csv')
    assert units.unit.tolist() == ['fit-no_ca-s0', 'fit-xt-s0', 'fit-xt-s1']
    assert units.model.tolist() == ['no_ca', 'full', 'full']
    (pub / 'compare' / 't.csv').unlink()
    with pytest.raises(StudyError, match='shares rows of compare/t.csv, which is not published'):
        publish_study(study, str(pub))
    spec.write_text(spec.read_text().replace('units: "fit-xt-*"', 'unit: "fit-xt-*"'))
    with pytest.raises(StudyError, match=r"shared=.*is not accepted; accepted: \{table"):
        load_study(str(spec))


def test_minutes_by_matrix_value(tmp_path):
    path = tmp_path / 's.yaml'
    path.write_text('units: [{name: "fit-{model}", command: x, matrix: {model: [big, small]}, '
                    'minutes: {model: {big: 40, small: 10}}}]')
    assert [u.minutes for u in load_study(str(path)).units] == [40.0, 10.0]


def test_a_unit_whose_command_changed_is_not_finished(tmp_path):
    """Outputs of another recipe never count: the runner refuses until told to run such units again from scratch."""
    study = load_study(str(_study(tmp_path)))
    run_study(study, only=['fit-s0'], log=lambda line: None)
    assert unit_state(study.unit('fit-s0')) == 'done'
    changed = load_study(str(_study(tmp_path)))
    changed.unit('fit-s0').command = changed.unit('fit-s0').command + ['--lr', '2e-3']
    assert unit_state(changed.unit('fit-s0')) == 'changed'
    with pytest.raises(StudyError, match='fit-s0 ran with another command .* --rerun-changed'):
        run_study(changed, only=['fit-s0'], log=lambda line: None)
    (tmp_path / 'runs' / 'fit-s0' / 'old-output.txt').write_text('of the old recipe')
    result = run_study(changed, only=['fit-s0'], log=lambda line: None, rerun_changed=True)
    assert result['done'] == ['fit-s0'] and unit_state(changed.unit('fit-s0')) == 'done'
    assert not (tmp_path / 'runs' / 'fit-s0' / 'old-output.txt').exists()


# a job that, like Lightning, exits with status 0 when it gets SIGTERM (or SIGINT, which submitit's cancel sends)
TRAPS_SIGTERM = textwrap.dedent('''
    import os, signal, sys, time
    def stop(*args):  # a training saves its state on the way out: it takes a moment
        time.sleep(2)
        open(os.path.join(sys.argv[1], 'saved'), 'w').write('1')
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    open(os.path.join(sys.argv[1], 'started'), 'w').write(str(os.getpid()))
    time.sleep(60)
''')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone too (its parent has not reaped it yet)
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.slow  # subprocesses and a signal
@pytest.mark.parametrize('executor', ['inline', 'local'])
def test_a_unit_stopped_by_sigterm_is_not_finished_even_if_its_command_exits_0(tmp_path, executor):
    """Stopping the runner stops its units (also submitit's local jobs, which would otherwise run on, unwatched, beside
    the next runner's copies): each is left resumable, not finished, and no further unit starts."""
    (tmp_path / 'job.py').write_text(TRAPS_SIGTERM)
    spec = _write_study(tmp_path, f'''
        - name: long
          command: python {tmp_path / 'job.py'} {{dir}}
        - name: next
          command: python {tmp_path / 'job.py'} {{dir}}
    ''')
    runner = subprocess.Popen([sys.executable, '-m', 'moga_lab.cli.study', 'run', str(spec), '--executor', executor],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = tmp_path / 'runs' / 'long' / 'started'
    deadline = time.time() + 120
    while not (started.exists() and started.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    assert started.exists(), runner.communicate()[0]
    runner.send_signal(signal.SIGTERM)
    out, _ = runner.communicate(timeout=120)
    assert runner.returncode != 0, out
    assert not _alive(int(started.read_text())), 'the unit kept running after its runner stopped'
    assert unit_state(load_study(str(spec)).unit('long')) == 'partial'
    assert unit_state(load_study(str(spec)).unit('next')) == 'pending'
    assert 'stopped by signal' in (tmp_path / 'runs' / 'long' / 'unit.log').read_text()
    assert (tmp_path / 'runs' / 'long' / 'saved').exists(), 'the unit was killed before it could save its state'
    if executor == 'local':
        assert 'long: stopped, not finished' in out and '1 stopped' in out, out
        assert 'Traceback' not in out, out


def test_reset_starts_units_clean_and_names_finished_users(tmp_path, capsys):
    spec = str(_study(tmp_path))
    run_study(load_study(spec), log=lambda line: None)
    assert study_cli.main(['reset', spec, 'fit-s0']) == 0
    out = capsys.readouterr().out
    assert '1 unit(s) reset: fit-s0' in out and 'use their outputs (kept): report' in out
    study = load_study(spec)
    assert unit_state(study.unit('fit-s0')) == 'pending' and unit_state(study.unit('report')) == 'done'
    assert run_study(study, log=lambda line: None)['done'] == ['fit-s0']
    assert (tmp_path / 'runs' / 'fit-s0' / 'steps.txt').read_text() == '1\n2\n3\n'   # from the start
    with pytest.raises(SystemExit):
        study_cli.main(['reset', spec, 'nothing*'])
    assert 'reset nothing* matches no unit' in capsys.readouterr().err


def test_a_unit_still_on_slurm_is_watched_not_submitted_again(tmp_path, monkeypatch):
    """A runner stopped on the login node leaves its Slurm jobs running: the next run must watch them, and a reset
    must not remove a running job's folder (either would run the unit twice, side by side)."""
    import submitit

    from moga_lab.studies import execute, runner
    bin_dir, queue = tmp_path / 'bin', tmp_path / 'queue'   # a fake Slurm: squeue prints queue/<id>, else forgets it
    bin_dir.mkdir()
    queue.mkdir()
    (bin_dir / 'sbatch').write_text('#!/bin/sh\nexit 1\n')
    (bin_dir / 'squeue').write_text(f'#!/bin/sh\n# squeue --noheader --jobs ID --format %T\n'
                                    f'[ -f {queue}/down ] && echo "Unable to contact slurm controller" >&2 && exit 1\n'
                                    f'[ -f {queue}/$3 ] && cat {queue}/$3 && exit 0\n'
                                    'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n')
    for name in ('sbatch', 'squeue'):
        os.chmod(bin_dir / name, 0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')

    class Job:
        def __init__(self, job_id, run):
            self.job_id, self._run = job_id, run

        def done(self):
            return True

        def result(self):
            return self._run()

    submitted, watched, ids = [], [], iter(range(42, 99))

    class Executor:  # submits by running the unit at once
        def __init__(self, folder, cluster):
            pass

        def update_parameters(self, **kwargs):
            pass

        def submit(self, fn):
            submitted.append(fn.unit.name)
            code = fn()
            return Job(str(next(ids)), lambda: code)

    study = load_study(str(_study(tmp_path)))
    for name, job_id in (('fit-s0', '41'), ('fit-s1', '40')):
        os.makedirs(study.unit(name).dir)
        (tmp_path / 'runs' / name / 'slurm.job').write_text(job_id + '\n')
    (queue / '41').write_text('RUNNING\n')          # fit-s0's job runs on; fit-s1's job 40 has ended

    def slurm_job(folder, job_id):  # the cluster finishes job 41: fit-s0 runs there, not here
        watched.append(job_id)
        return Job(job_id, execute.UnitJob(study.unit('fit-s0'), None))

    monkeypatch.setattr(submitit, 'AutoExecutor', Executor)
    monkeypatch.setattr(execute, 'slurm_job', slurm_job)
    lines = []
    result = run_study(study, executor='slurm', log=lines.append)
    assert submitted == ['fit-s1', 'report'] and watched == ['41'], lines
    assert sorted(result['done']) == ['fit-s0', 'fit-s1', 'report'] and result['failed'] == []
    assert 'fit-s0: already on Slurm as job 41; watched, not submitted again' in lines
    assert (tmp_path / 'runs' / 'fit-s1' / 'slurm.job').read_text() == '42\n'

    (queue / '41').unlink()                          # its job has ended; fit-s1's is requeued:
    (queue / '42').write_text('PENDING\n')           # reset must not pull its folder away
    with pytest.raises(StudyError, match=r'reset: fit-s1 \(job 42\) still queued or running on Slurm; scancel 42'):
        runner.reset_units(study, ['fit-s*'])
    assert unit_state(study.unit('fit-s1')) == 'done'
    (queue / '42').write_text('COMPLETED\n')         # ended (squeue lists a finished job for a while)
    assert runner.reset_units(study, ['fit-s1'])['reset'] == ['fit-s1']
    os.makedirs(study.unit('fit-s1').dir)             # submitted as job 43, and Slurm does not answer:
    (tmp_path / 'runs' / 'fit-s1' / 'slurm.job').write_text('43\n')
    (queue / 'down').write_text('')                  # nothing is submitted, so that nothing runs twice
    submitted.clear()
    with pytest.raises(StudyError, match=r'fit-s1: squeue could not say whether its job 43 still runs \(Unable to '):
        run_study(study, executor='slurm', log=lambda line: None)
    assert submitted == []
    (queue / 'down').unlink()
    export_units(study, str(tmp_path / 'state.tar.gz'), include_finished=True)
    with tarfile.open(tmp_path / 'state.tar.gz') as tar:
        assert not [m.name for m in tar.getmembers() if m.name.endswith('slurm.job')]   # ids mean nothing elsewhere
