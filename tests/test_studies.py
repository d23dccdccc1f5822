"""The studies' generators (moga-compare, moga-ablate), a generated study run end to end through moga-study, and the
commands beside the studies (Grad-CAM, convergence, claims)."""
import importlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_script

from moga_lab.analysis.gradcam import mass_summary
from moga_lab.studies.generate import ablation_study, comparison_study, row_flags, write_study
from moga_lab.studies.runner import StudyError, load_study, publish_study

ROOT = Path(__file__).resolve().parents[1]
_run = run_script


def test_a_comparison_is_a_study_file_of_the_package_s_commands(tmp_path):
    """The generated units: a sweep per model (the learning rate chosen on the validation split), a training per
    model and seed taking the sweep's choice, curves on the same images and design for every model and seed, and
    Grad-CAM of the first seed's checkpoints; every command parses with its tool's own parser."""
    study = comparison_study(['moganet_xtiny', 'convnext_atto'], seeds=[0, 1], lrs=[1e-3, 4e-3], num_images=16,
                             design='shared', registry='experiments/claims/paper.yaml')
    path = write_study(study, str(tmp_path / 'cmp.yaml'))
    loaded = load_study(path)
    names = [u.name for u in loaded.units]
    assert names == ['sweep-moganet_xtiny', 'sweep-convnext_atto', 'fit-moganet_xtiny-s0', 'fit-moganet_xtiny-s1',
                     'fit-convnext_atto-s0', 'fit-convnext_atto-s1', 'curves-moganet_xtiny-s0',
                     'curves-moganet_xtiny-s1', 'curves-convnext_atto-s0', 'curves-convnext_atto-s1', 'gradcam']
    fit = loaded.unit('fit-convnext_atto-s1')
    assert fit.after == ['sweep-convnext_atto'] and fit.resume_args == ['--resume']
    assert fit.command[fit.command.index('--lr-from') + 1].endswith('sweep-convnext_atto/sweep.csv')
    assert fit.command[fit.command.index('--seed') + 1] == '1'
    curves = loaded.unit('curves-moganet_xtiny-s1')
    assert curves.command[curves.command.index('--design') + 1] == 'shared' and '--num-images' in curves.command
    assert loaded.unit('gradcam').after == ['fit-moganet_xtiny-s0', 'fit-convnext_atto-s0']
    assert set(loaded.publish) == {'compare/interaction_seeds.csv', 'compare/accuracy.csv', 'compare/configs.csv',
                                   'compare/gradcam.csv', 'compare/gradcam_grid.png', 'compare/sweep.csv'}
    assert loaded.reports['compare']['reference'] == 'moganet_xtiny' and loaded.claims['registry']
    from moga_lab.cli import fit, gradcam, interaction, sweep
    for unit in loaded.units:
        tool = dict(sweep=sweep, fit=fit, curves=interaction, gradcam=gradcam)[unit.name.split('-')[0]]
        tool.build_parser().parse_args(unit.command[1:])          # every flag is the tool's own
    assert '&id' not in Path(path).read_text()                   # lists written out, no YAML anchors
    single = comparison_study(['a', 'b'], seeds=[0], lrs=[2e-3])   # one rate: no sweep
    assert [u['name'] for u in single['units']][0] == 'fit-{model}-s{seed}' and 'sweep' not in str(single['publish'])
    with pytest.raises(StudyError, match='a comparison needs 2 or more models'):
        comparison_study(['a'])


def test_an_ablation_row_is_moganet_changed_by_its_switches(tmp_path):
    assert row_flags('plain', dict(gating=False, feat_decompose=False, channel_aggregation=False)) == \
        ['--no-gating', '--no-fd', '--no-ca']
    assert row_flags('r', dict(channel_split=[1, 0, 0], dilations=[1, 1, 1], gate_act='sigmoid', gating=True)) == \
        ['--channel-split', '1:0:0', '--dilations', '1,1,1', '--gate-act', 'sigmoid']
    with pytest.raises(StudyError, match="row r: switch 'gatting' is not accepted; accepted: gating"):
        row_flags('r', dict(gatting=False))
    study = ablation_study({'full': {}, 'no_ca': {'channel_aggregation': False}}, seeds=[0, 1],
                           lr_from='docs/studies/compare/sweep.csv')
    loaded = load_study(write_study(study, str(tmp_path / 'abl.yaml')))
    unit = loaded.unit('fit-no_ca-s1')
    assert '--no-ca' in unit.command and unit.keys == {'model': 'no_ca', 'seed': 1}
    assert unit.command[unit.command.index('--lr-from') + 1] == 'docs/studies/compare/sweep.csv'
    assert loaded.unit('curves-no_ca-s0').after == ['fit-no_ca-s0']
    assert loaded.reports['ablation'] == dict(title='moganet_xtiny ablations', reference='full', noun='row',
                                              design=loaded.reports['ablation']['design'])
    from moga_lab.cli import fit
    fit.build_parser().parse_args(unit.command[1:])


@pytest.mark.parametrize('command,args,message', [
    ('compare', ['--weights', 'x.pth'], '--weights is no longer an option: this command writes a study file for '
                                        'moga-study; use released weights: moga-validate'),
    ('compare', ['--train-seeds', '1'], 'use --seeds'),
    ('compare', ['--publish', 'docs'], 'use moga-study publish STUDY.yaml --to DIR'),
    ('ablate', ['--curve-seeds', '1'], 'use --seeds'),
    ('ablate', ['--executor', 'local'], 'use moga-study run STUDY.yaml --executor inline|local|slurm'),
    ('ablate', ['--rows', 'nope', '--study', 'x.yaml'], "--rows ['nope'] are not in the config; accepted: full"),
])
def test_the_drivers_options_name_their_replacements_in_one_line(tmp_path, capsys, command, args, message):
    tool = importlib.import_module(f'moga_lab.cli.{command}')
    with pytest.raises(SystemExit) as stop:
        tool.main(args + (['--study', str(tmp_path / 's.yaml')] if '--study' not in args else []))
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 's.yaml').exists()


def test_a_bad_ablation_config_is_one_line(tmp_path, capsys):
    config = tmp_path / 'grid.yaml'
    config.write_text(yaml.safe_dump(dict(budget=dict(epochs=1, learning_rate=0.1), rows={'full': {}})))
    from moga_lab.cli import ablate
    with pytest.raises(SystemExit):
        ablate.main(['--config', str(config), '--study', str(tmp_path / 's.yaml')])
    assert "budget: unknown keys ['learning_rate']; accepted: batch_size" in capsys.readouterr().err


@pytest.mark.slow  # trains and analyses two tiny models end to end
def test_a_generated_comparison_runs_resumes_and_publishes_through_moga_study(tmp_path):
    """moga-compare writes the study, --run runs it here, a second run finds everything finished, and publish
    gathers the tables and renders the report (the behaviour the comparison driver had, through the one runner)."""
    os.environ.pop('MOGA_LAB_RUN_DIR', None)
    study = tmp_path / 'study.yaml'
    args = ['--models', 'moganet_xtiny', 'convnext_atto', '--seeds', '0', '1', '--epochs', '1', '--lrs', '2e-3',
            '--limit-train-batches', '2', '--batch-size', '16', '--num-images', '2', '--pairs', '2', '--contexts', '3',
            '--grid', '4', '--cam-images', '4', '--data', 'synthetic', '--units-dir', str(tmp_path / 'runs'),
            '--study', str(study), '--run']
    done = _run('analysis/compare_models.py', args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded = load_study(str(study))
    from moga_lab.studies.runner import run_study, unit_state
    assert all(unit_state(u) == 'done' for u in loaded.units)
    assert run_study(loaded, log=lambda line: None)['done'] == []           # finished units are not run again
    written = publish_study(loaded, str(tmp_path / 'docs'))
    folder = tmp_path / 'docs' / 'compare'
    seeds = pd.read_csv(folder / 'interaction_seeds.csv')
    assert set(seeds.model) == {'moganet_xtiny', 'convnext_atto'} and set(seeds.seed) == {0, 1}
    assert seeds.groupby(['model', 'seed']).image_id.apply(tuple).nunique() == 1   # the same images everywhere
    accuracy = pd.read_csv(folder / 'accuracy.csv')
    assert len(accuracy) == 4 and accuracy.test_top1.between(0, 100).all()
    assert (folder / 'report.md').is_file() and (folder / 'curves.png').stat().st_size > 10_000
    assert written['compare/units.csv'] == len(loaded.units)
    report = (folder / 'report.md').read_text()
    assert '## Accuracy' in report and '## Multi-order interactions' in report and '## Grad-CAM' in report


def test_gradcam_cli(tmp_path):
    from moga_lab.cli import fit as fit_cli
    from moga_lab.cli import gradcam as tool
    import numpy as np
    os.environ.pop('MOGA_LAB_RUN_DIR', None)
    assert fit_cli.main(['--variant', 'xt', '--data', 'synthetic', '--image-size', '28', '--epochs', '1',
                         '--limit-train-batches', '3', '--no-progress', '--run-dir', str(tmp_path / 'r')]) == 0
    os.environ.pop('MOGA_LAB_RUN_DIR', None)
    ckpt = str(tmp_path / 'r' / 'last.ckpt')
    assert tool.main(['--checkpoint', ckpt, '--checkpoint', ckpt, '--label', 'a', '--label', 'b', '--num-images', '4',
                      '--out', str(tmp_path / 'gc'), '--layer', 'norm3']) == 0
    data = np.load(tmp_path / 'gc' / 'gradcam_maps.npz')
    assert data['maps'].shape == (2, 4, 28, 28) and data['maps'].max() <= 1 + 1e-6
    assert list(data['models']) == ['a', 'b'] and len(data['class_names']) == 4
    with pytest.raises(SystemExit):
        tool.main(['--checkpoint', ckpt, '--out', str(tmp_path / 'gc'), '--layer', 'norm9'])


def test_fit_benchmark_rejects_a_bad_val_size_before_writing_anything(tmp_path):
    out = tmp_path / 'bench'
    done = _run('benchmarks/fit_fashion_mnist.py', ['--models', 'moganet_xtiny', '--val-size', '70000',
                                                    '--out', str(out)], tmp_path)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert 'val_size=70000 must be in [0, 60000)' in done.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_convergence_report(tmp_path, capsys):
    budget = tmp_path / 'ablation.csv'
    budget.write_text('row,seed,test_top1\nfull,0,91.5\nfull,1,91.9\nfull,2,91.2\nno_ca,0,90.0\n')
    twice = tmp_path / 'compare.csv'
    twice.write_text('model,seed,lr,test_top1\nmoganet_xtiny,0,0.004,92.8\nconvnext_atto,0,0.008,90.0\n')
    out = tmp_path / 'docs' / 'convergence.md'
    convergence = importlib.import_module('moga_lab.cli.convergence')
    assert convergence.main(['--budget', f'{budget}:full', '--twice', f'{twice}:moganet_xtiny',
                             '--labels', '3 epochs', '6 epochs', '--out', str(out)]) == 0
    text = out.read_text()
    # means 91.53 vs 92.80: +1.27 points, paired on seed 0: +1.30; outside the 1-point tolerance
    assert 'changes test top-1 by +1.27 points (means); paired by seed (0): +1.30' in text
    assert 'NOT within 1 point' in text and 'spread over seeds is 0.35 points' in text
    table = pd.read_csv(out.with_suffix('.csv'))
    assert list(table.n) == [3, 1] and abs(table.top1_mean[0] - 91.533) < 1e-3
    convergence.main(['--budget', f'{budget}:full', '--twice', f'{twice}:moganet_xtiny', '--tolerance', '1.5'])
    assert 'The budget is within 1.5 point' in capsys.readouterr().out


@pytest.mark.parametrize('spec, message', [
    ('{d}/ablation.csv:fulll', "no line named 'fulll'; names there: full"),
    ('{d}/missing.csv:full', 'missing.csv: no such file'),
    ('full', "'full' is not accepted; accepted: FILE:NAME"),
])
def test_convergence_bad_input_is_one_line(tmp_path, capsys, spec, message):
    (tmp_path / 'ablation.csv').write_text('row,seed,test_top1\nfull,0,91.5\n')
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module('moga_lab.cli.convergence').main(['--budget', spec.format(d=tmp_path), '--twice',
                                                     f'{tmp_path}/ablation.csv:full'])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_claims_command_has_one_engine_and_a_power_table(tmp_path, capsys):
    """``moga-claims`` evaluates a registry, and ``power`` reads what it can decide; the exploratory second engine
    (--compare / --ablation) is gone with a one-line pointer."""
    claims = importlib.import_module('moga_lab.cli.claims')
    with pytest.raises(SystemExit) as exit_:
        claims.main(['--compare', str(tmp_path / 'c')])
    assert exit_.value.code == 2 and 'declare the claims in a registry and run moga-claims --registry' in \
        capsys.readouterr().err
    from moga_lab.analysis.known_studies import STUDY_CASES, simulate_study
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    study = tmp_path / 'study'
    study.mkdir()
    frame = simulate_study(STUDY_CASES['balanced'], 4, 24, rng=1).assign(noise_floor=0.001)
    frame.to_csv(study / 'interaction_seeds.csv', index=False)
    registry = tmp_path / 'r.yaml'
    registry.write_text(yaml.safe_dump(dict(family='t', claims=[dict(
        id='gap', test='middle_share_seeds', study='study', a='a', b='b', statistic='mean-abs', pairing='seed',
        alternative='two-sided')])))
    assert claims.main(['power', str(registry), '--difference', 'gap=0.02', '--out', str(tmp_path / 'p.csv')]) == 0
    table = pd.read_csv(tmp_path / 'p.csv')
    row = table.iloc[0]
    assert row.claim_id == 'gap' and row.difference == 0.02 and row.decidable_first == row.decidable_last > 0
    assert row.seeds == 4 and row.images == 24 and row.layout == 'crossed'
    assert 'seeds_for_32_images' in table.columns and 'seeds_for_256_images' in table.columns
    capsys.readouterr()
    for bad, message in ((['--difference', 'gap'], "--difference 'gap' is not accepted; accepted: CLAIM=VALUE"),
                         (['--difference', 'nope=1'], 'names nope, not a claim of the family; accepted: gap'),
                         (['--power', '2'], '--power 2.0 is not accepted')):
        with pytest.raises(SystemExit) as exit_:
            claims.main(['power', str(registry)] + bad)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_target_over_images_and_the_precision_reached():
    """--target-over images holds each image to target x sqrt(N); the report states the precision each curve
    reached over its images (sqrt of the mean I2, its interval from the per-image standard errors)."""
    from moga_lab.analysis.estimate import per_image_target
    from moga_lab.analysis.tables import describe_precision
    assert per_image_target(0.05, 16, 'images') == pytest.approx(0.2)
    assert per_image_target(0.05, 16, 'image') == 0.05 and per_image_target(None, 16, 'images') is None
    with pytest.raises(ValueError, match="'all' is not accepted; accepted: image .* or images"):
        per_image_target(0.05, 16, 'all')
    frame = pd.DataFrame(dict(model='m', image_id=[1, 2], ratio=0.0, I2=[1.0, 1.0], I2_se=[0.1, 0.1]))
    # mean I2 = 1, its se = sqrt(0.1^2 + 0.1^2) / 2; half-width of sqrt(1 +- 1.96 se), relative to 1
    se = (0.02 ** 0.5) / 2
    expected = ((1 + 1.959964 * se) ** 0.5 - (1 - 1.959964 * se) ** 0.5) / 2
    assert describe_precision(frame) == (f'Monte-Carlo precision of each curve over its 2 images (given the images and '
                                         f'pairs): 95 % half-width at most {100 * expected:.1f} % (m) of the strength '
                                         'at any order')


def test_cam_summary_pairs_the_images_every_model_can_use():
    """mass_summary: gradcam.csv -> the per-model means, the paired differences and the garment area, over the images whose map is
    non-zero for every model (here images 0-2; image 3 has an all-zero map for convnext_atto)."""
    names = ['moganet_xtiny', 'convnext_atto']
    table = pd.DataFrame(dict(model=np.repeat(names, 4), image_id=[3, 0, 1, 2, 0, 1, 2, 3],
                              cam_on_garment=[0.9, 0.6, 0.7, 0.8, 0.4, 0.5, 0.6, np.nan],
                              garment_area=[0.9, 0.3, 0.4, 0.5, 0.3, 0.4, 0.5, 0.9]))
    rows, diffs, area, n = mass_summary(table, names, seed=0)
    assert n == 3 and rows['moganet_xtiny'][0] == pytest.approx(0.7) and rows['convnext_atto'][0] == pytest.approx(0.5)
    assert diffs['convnext_atto'] == pytest.approx((0.2, 0.2, 0.2))   # the same +0.2 on every image: no spread
    assert area == pytest.approx(0.4)


def test_cam_on_garment_without_two_usable_images_says_so():
    """Models whose Grad-CAM maps are all zero (nothing supports the class) leave no image to measure: NaN, not a
    failure after hours of training."""
    names = ['moganet_xtiny', 'convnext_atto']
    table = pd.DataFrame(dict(model=np.repeat(names, 8), image_id=np.tile(np.arange(8), 2), garment_area=0.4,
                              cam_on_garment=[0.5, 0.6] + [np.nan] * 6 + [np.nan, np.nan] + [0.3] * 6))
    rows, diffs, area, n = mass_summary(table, names, seed=0)
    assert n == 0 and all(np.isnan(v).all() for v in rows.values()) and np.isnan(diffs['convnext_atto']).all()
