"""The study scripts end to end at their --quick settings (real Fashion-MNIST, a few steps per row)."""
import importlib
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import run_script

from moga_lab.analysis.gradcam import mass_summary
from moga_lab.data import DEFAULT_FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,  # trains and runs studies end to end: `make test-fast` leaves it out
              pytest.mark.skipif(not os.path.isdir(DEFAULT_FASHION_MNIST_DIR), reason='dataset-fashion-mnist not installed')]


_run = run_script


def test_ablate_quick_rows_resume(tmp_path):
    out = tmp_path / 'abl'
    # the grid split over processes (--no-report), by rows and by seeds, then one run that reads everything back
    # --curve-seeds 1: curves on seed 1's checkpoints too (full and no_gating by the call that trains both seeds; plain
    # by its seed-1 call)
    for part in (['--rows', 'full', 'no_gating', '--curve-seeds', '1'], ['--rows', 'plain', '--seeds', '1', '--curve-seeds', '1'],
                 ['--rows', 'plain', '--seeds', '0']):
        done = _run('experiments/ablate.py', ['--quick', '--no-report', '--out', str(out), *part], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert not (out / 'ablation.csv').exists()
        if '--seeds' in part and part[-1] == '1':  # a later seed alone: its own curves; the row's wait for seed 0
            assert (out / 'plain' / 'seed1' / 'results.yaml').is_file()
            assert (out / 'plain' / 'seed1' / 'interaction.csv').is_file()
            assert not (out / 'plain' / 'seed0').exists() and not (out / 'plain' / 'interaction.csv').exists()
        else:
            assert (out / part[1] / 'interaction.csv').is_file()
    assert (out / 'full' / 'seed1' / 'interaction.csv').is_file() and (out / 'no_gating' / 'seed1' / 'interaction.csv').is_file()
    finished = [out / 'plain' / 'seed1' / 'results.yaml', out / 'full' / 'interaction.csv',
                out / 'full' / 'seed1' / 'interaction.csv']
    stamps = [f.stat().st_mtime_ns for f in finished]
    for checkpoint in out.rglob('*.ckpt'):  # as on a fresh clone of a committed study folder: results and curves only
        checkpoint.unlink()
    args = ['--quick', '--rows', 'full', 'no_gating', 'plain', '--out', str(out)]
    docs = tmp_path / 'docs' / 'ablation'
    done = _run('experiments/ablate.py', [*args, '--publish', str(docs)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / 'ablation.md').read_text()
    assert f'Command: `python experiments/ablate.py {" ".join(args)} --publish {docs}`' in report
    assert re.search(r'Trained on: .+, \d+ cores, torch [\d.]+ \(\d+ threads?\)\. Wall time: training \d+\.\d h .* '
                     r'interactions \d+ min', report), report
    # every figure's caption names the resolution and the budget in words
    assert re.search(r'!\[interaction curves of every row \([^\]]*seed-0 checkpoints; 28 px, 1 epoch of 6 batches [^\]]*\]'
                     r'\(ablation_curves\.png\)', report), report
    assert sorted(p.name for p in docs.iterdir()) == ['ablation.csv', 'ablation.md', 'ablation_curves.png',
                                                      'accuracy.csv', 'curve.csv', 'interaction.csv',
                                                      'interaction_seeds.csv', 'seed_shares.csv', 'seed_shares.png']
    # the seed curves, read back without checkpoints: a share per (row, seed), full minus each row on both seeds
    shares = pd.read_csv(out / 'seed_shares.csv')
    assert list(zip(shares.model, shares.seed)) == [(r, s) for r in ('full', 'no_gating', 'plain') for s in (0, 1)]
    assert shares.share.between(0, 1).all()
    seeded = pd.read_csv(out / 'interaction_seeds.csv')
    assert seeded.groupby(['model', 'seed']).image_id.nunique().eq(1).all()
    assert "Middle share on each training seed's checkpoint" in report and '| no_gating | ' in report
    assert re.search(r"Planning: a row's middle share moves by \d\.\d{3}-\d\.\d{3} \(s\.d\.\) .* about ±\d\.\d{3} with 2 "
                     r'seeds each, and ±0\.03 \(enough to decide a difference of that size\) needs \d+ seeds each', report)
    assert "Middle share (mean |I|) of 'full' minus that of each row on the seed-0 checkpoints" in report
    assert re.search(r'Seed 1: Monte-Carlo precision of each curve over its 1 images .* at most [\d.]+ % \(full\)', report)
    assert re.search(r'!\[middle-order share of each row on each training seed \(1 test images.*28 px, .*\]\(seed_shares\.png\)',
                     report), report
    assert re.search(r'\| plain \| [+-]\d\.\d{3} \([^)]*\) \| [+-]\d\.\d{3} \([^)]*\) \| [+-]\d\.\d{3}', report), report
    assert [f.stat().st_mtime_ns for f in finished] == stamps   # nothing trained or computed again
    table = pd.read_csv(out / 'ablation.csv')
    assert list(table.row) == ['full', 'no_gating', 'plain']
    assert table.params_M.iloc[0] > table.params_M.iloc[2]          # the plain block has fewer parameters
    assert table.top1_spread.notna().all() and (table.seeds == 2).all()
    assert table['middle_share_0.2-0.6n'].between(0, 1).all()
    assert (out / 'ablation.md').read_text().count('\n|') >= 4
    assert (out / 'ablation_curves.png').stat().st_size > 10_000
    accuracy = pd.read_csv(out / 'accuracy.csv')            # what other scripts read: row, seed, top-1 in percent
    assert list(accuracy.columns[:3]) == ['row', 'seed', 'test_top1'] and len(accuracy) == 6
    assert accuracy.machine.str.contains(' cores, torch ').all() and accuracy.threads.ge(1).all()  # who trained each
    means = accuracy.groupby('row').test_top1.mean()
    assert (means - table.set_index('row').top1_mean).abs().max() < 0.01   # accuracy.csv rounds to 0.01 %
    inter = pd.read_csv(out / 'interaction.csv')
    assert set(inter.model) == {'full', 'no_gating', 'plain'} and 'image_id' in inter
    assert set(pd.read_csv(out / 'curve.csv').model) == set(inter.model)
    # a second run trains nothing again (every row's results.yaml is there) and gives the same table
    again = _run('experiments/ablate.py', args, tmp_path)
    assert again.returncode == 0 and '[jobs]' not in again.stdout  # nothing left to run
    assert 'Epoch' not in again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / 'ablation.csv'), table)
    # the seed caches gone (deleted by hand): the report drops its seed tables instead of publishing the old ones
    for cache in out.glob('*/seed1/interaction.csv'):
        cache.unlink()
    again = _run('experiments/ablate.py', args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not any((out / f).exists() for f in ('interaction_seeds.csv', 'seed_shares.csv', 'seed_shares.png'))
    assert "Middle share on each training seed's checkpoint" not in (out / 'ablation.md').read_text()
    # a committed row whose curves were stopped half-way, on a machine without its checkpoint: one line, the way out
    cache = out / 'plain' / 'interaction.csv'
    rows = pd.read_csv(cache)
    rows[rows.image_id != rows.image_id.iloc[0]].to_csv(cache, index=False)
    done = _run('experiments/ablate.py', ['--quick', '--no-report', '--rows', 'plain', '--out', str(out)], tmp_path)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr[-3000:]
    assert "row 'plain': curves unfinished and" in done.stderr and f'delete {out / "plain" / "seed0"} to train' in done.stderr


@pytest.mark.parametrize('script', ['moga_lab.cli.ablate', 'moga_lab.cli.compare'])
def test_publish_to_a_file_is_one_line_and_writes_nothing(tmp_path, capsys, script):
    target = tmp_path / 'report.md'
    target.write_text('not a folder')
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(script).main(['--quick', '--out', str(out), '--publish', str(target), '--no-tracking'])
    assert exit_.value.code == 2 and f'--publish {target}: a file is there' in capsys.readouterr().err
    assert not out.exists()


def test_budget_states_its_epochs_in_words():
    from moga_lab.studies.common import Budget
    assert Budget(epochs=1, limit_train_batches=0.25).describe_epochs() == '1 epoch over 0.25 of the training set'
    assert Budget(epochs=3).describe_epochs() == '3 epochs'
    assert Budget(epochs=2, limit_train_batches=40).describe_epochs() == '2 epochs of 40 batches'


def test_reported_checkpoint_is_the_best_else_the_last(tmp_path):
    from moga_lab.studies.common import reported_checkpoint
    (tmp_path / 'last.ckpt').touch()
    assert reported_checkpoint(str(tmp_path)) == str(tmp_path / 'last.ckpt')
    (tmp_path / 'best.ckpt').touch()
    assert reported_checkpoint(str(tmp_path)) == str(tmp_path / 'best.ckpt')


def test_ablate_unknown_row(tmp_path):
    done = _run('experiments/ablate.py', ['--quick', '--rows', 'nope', '--out', str(tmp_path)], tmp_path)
    assert done.returncode == 2 and "unknown rows ['nope']" in done.stderr
    for flag in ('--seeds', '--curve-seeds'):
        done = _run('experiments/ablate.py', ['--quick', flag, '7', '--out', str(tmp_path / 'o')], tmp_path)
        assert done.returncode == 2 and f'{flag} [7]: not in the config; accepted: [0, 1]' in done.stderr
        assert 'Traceback' not in done.stderr and not (tmp_path / 'o').exists()


@pytest.mark.parametrize('edit, message', [
    (('drop_path_rate: 0.0', 'drop_path_rate: 2'), 'budget drop_path_rate=2 is not accepted; accepted: a number in [0, 1)'),
    (('drop_path_rate: 0.0', 'drop_path: 0.0'), "unknown budget keys ['drop_path']; accepted: model, epochs"),
    (('epochs: 3', 'epochs: 0'), 'budget epochs=0 is not accepted; accepted: an integer >= 1'),
    (('no_ca: {channel_aggregation: false}', 'no_ca: {channel_agg: false}'), "row 'no_ca': unknown switches ['channel_agg']"),
    (('no_ca: {channel_aggregation: false}', 'no_ca: {gate_act: foo}'), "row 'no_ca': gate_act='foo' is not supported"),
    (('target_over: images', 'target_over: all'), "interaction.target_over='all' in the config is not accepted"),
])
def test_ablate_bad_config_is_one_line_and_writes_nothing(tmp_path, edit, message):
    text = (ROOT / 'tests/data/ablation_grid.yaml').read_text()
    assert edit[0] in text
    config = tmp_path / 'bad.yaml'
    config.write_text(text.replace(edit[0], edit[1]))
    out = tmp_path / 'out'
    done = _run('experiments/ablate.py', ['--config', str(config), '--out', str(out), '--no-tracking'], tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr and not out.exists()


@pytest.mark.parametrize('args, message', [
    (['--batch-size', '0'], "argument --batch-size: '0' is not accepted; accepted: an integer >= 1"),
    (['--image-size', '5'], "argument --image-size: '5' is not accepted; accepted: an integer >= 16"),
    (['--lr', 'nope=1e-3'], "--lr 'nope=1e-3' names no model of --models"),
    (['--drop-path', '1.5'], "argument --drop-path: '1.5' is not accepted; accepted: a number in [0, 1)"),
    (['--cam-images', '1'], "argument --cam-images: '1' is not accepted; accepted: an integer >= 2"),
    (['--only', 'nope'], '--only nope: not among --models; accepted: moganet_xtiny, convnext_atto, swin_femto'),
    (['--train-seeds', '1', '0'], "--train-seeds 0: that is --seed, the compared runs' own training seed; accepted: other"),
    (['--model', 'moganet_xtiny', '--weights', 'w.pth', '--train-seeds', '1'],
     '--train-seeds 1: trains the models again; accepted: no --train-seeds with --checkpoint or --model/--weights'),
    (['--model', 'moganet_xtiny', '--weights', 'w.pth', '--cam-images', '64'],
     '--cam-images 64: the Grad-CAM mass on the object (Fashion-MNIST garment masks) is computed for the models '
     'trained here only'),
])
def test_compare_models_bad_budget_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / 'out'
    done = _run('analysis/compare_models.py', [*args, '--out', str(out), '--no-tracking'], tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr and not out.exists()


def test_compare_models_quick(tmp_path):
    out = tmp_path / 'cmp'
    docs = tmp_path / 'docs' / 'compare'
    # one model alone first (as one process on one machine would): trained and analysed, no report yet
    done = _run('analysis/compare_models.py', ['--quick', '--out', str(out), '--gradcam-images', '3',
                                               '--only', 'swin_femto'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / 'swin_femto' / 'analysis.pt').is_file() and not (out / 'moganet_xtiny').exists()
    assert not (out / 'report.md').exists() and 'not analysed yet (the report waits for them): moganet_xtiny, ' \
        'convnext_atto' in done.stderr
    done = _run('analysis/compare_models.py', ['--quick', '--out', str(out), '--gradcam-images', '3',
                                               '--publish', str(docs)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = pd.read_csv(out / 'accuracy.csv')
    assert list(accuracy.model) == ['moganet_xtiny', 'convnext_atto', 'swin_femto']
    assert (accuracy.train_wall_min >= 0).all()
    for name in ('interaction_curves.png', 'gradcam_grid.png', 'report.md', 'curve.csv'):
        assert (out / name).is_file(), name
    report = (out / 'report.md').read_text()
    assert re.search(r'!\[Grad-CAM \(3 test images; models trained 1 epoch[^\]]*\]\(gradcam_grid\.png\)', report), report
    # the exact command and the machine, and the wall times, are in the report
    assert f'Command: `python analysis/compare_models.py --quick --out {out} --gradcam-images 3 --publish {docs}`' in report
    assert 'Report written on: ' in report and re.search(r'interactions \d+ min', report)
    assert re.search(r'Trained on: [^.]+ cores, torch [\d.]+ \(\d+ threads?\)\. Wall time', report), report
    # published: the tables, report and figures only (the checkpoints stay in the run folder)
    assert sorted(p.name for p in docs.iterdir()) == ['accuracy.csv', 'curve.csv', 'gradcam.csv', 'gradcam_grid.png',
                                                      'interaction.csv', 'interaction_curves.png', 'report.md']
    assert list((out / 'moganet_xtiny').glob('*.ckpt')) and not list(docs.rglob('*.ckpt'))
    assert (docs / 'report.md').read_text() == report
    assert 'moganet_xtiny: `norm3` (4x4 map)' in report  # not the 2x2 norm4 on 28 px inputs
    # every family at its deepest stage with a map of at least 4x4, named by its path in the model (Swin is NHWC)
    # 28 px: ConvNeXt (patch 1) 28 -> 14 -> 7 -> 3, Swin (patch 2) 14 -> 7 -> 4 -> 2 (NHWC, read as H x W)
    assert re.search(r'convnext_atto: `stages\.2` \(7x7 map\)', report), report
    assert re.search(r'swin_femto: `layers\.2` \(4x4 map\)', report), report
    assert 'Monte-Carlo precision of each curve over its 2 images' in report
    # Grad-CAM mass on the garment, per model with its interval, and paired against MogaNet on the same images
    assert accuracy.cam_on_garment.between(0, 1).all()
    low_high = accuracy.cam_on_garment_95ci.str.split('-', expand=True).astype(float)
    assert ((low_high[0] <= accuracy.cam_on_garment + 1e-9) & (accuracy.cam_on_garment <= low_high[1] + 1e-9)).all()
    assert re.search(r'Paired differences on the same images: moganet_xtiny - convnext_atto: [+-]\d\.\d{3} \(', report)
    assert re.search(r'\d test images drawn with seed 2; garment = pixels above 10 % of full scale, 0\.\d{3} of the image',
                     report), report
    cams = pd.read_csv(out / 'gradcam.csv')   # per model and image: what paper_claims reads
    assert list(cams.columns) == ['model', 'image_id', 'cam_on_garment', 'garment_area'] and len(cams) == 3 * 8
    assert (cams.groupby('model').image_id.apply(sorted).apply(tuple).nunique()) == 1   # the same images
    # the report again from the run folders alone, as on a fresh clone of a committed study (no checkpoint)
    for checkpoint in out.rglob('*.ckpt'):
        checkpoint.unlink()
    again = _run('analysis/compare_models.py', ['--quick', '--out', str(out), '--gradcam-images', '3'], tmp_path)
    assert again.returncode == 0 and 'Epoch' not in again.stderr, again.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(out / 'accuracy.csv'), accuracy)
    pd.testing.assert_frame_equal(pd.read_csv(out / 'gradcam.csv'), cams)


def test_compare_models_train_seeds(tmp_path):
    """Each model on a second training seed, curves on the same images and design: per-seed top-1 and middle share,
    MogaNet minus each model on every seed and across seeds; the report reads the seed folders back without the flag."""
    out = tmp_path / 'cmp'
    base = ['--quick', '--models', 'moganet_xtiny', 'swin_femto', '--out', str(out), '--gradcam-images', '2']
    done = _run('analysis/compare_models.py', [*base, '--only', 'swin_femto', '--train-seeds', '1'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / 'swin_femto' / 'seed1' / 'results.yaml').is_file() and not (out / 'moganet_xtiny').exists()
    seed1 = pd.read_csv(out / 'swin_femto' / 'seed1' / 'interaction.csv')
    first = pd.read_csv(out / 'swin_femto' / 'interaction.csv')
    # the same images and design, another checkpoint
    assert sorted(seed1.image_id.unique()) == sorted(first.image_id.unique()) and len(seed1) == len(first)
    assert not np.allclose(seed1.sort_values(['image_id', 'ratio']).I2, first.sort_values(['image_id', 'ratio']).I2)
    done = _run('analysis/compare_models.py', [*base, '--only', 'moganet_xtiny', '--train-seeds', '1'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    note = 'ConvNeXt-atto is not in this comparison: its run did not fit.'
    done = _run('analysis/compare_models.py', [*base, '--note', note], tmp_path)   # the report: no --train-seeds needed
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / 'report.md').read_text().startswith(f'# MogaNet vs Swin on Fashion-MNIST\n\n{note}\n\nSame recipe')
    accuracy = pd.read_csv(out / 'accuracy.csv')
    assert list(zip(accuracy.model, accuracy.seed)) == [('moganet_xtiny', 0), ('swin_femto', 0), ('moganet_xtiny', 1),
                                                        ('swin_femto', 1)]
    assert accuracy.test_top1.between(0, 100).all() and accuracy.cam_on_garment.notna().sum() == 2
    shares = pd.read_csv(out / 'seed_shares.csv')
    assert sorted(zip(shares.model, shares.seed)) == [('moganet_xtiny', 0), ('moganet_xtiny', 1), ('swin_femto', 0),
                                                      ('swin_femto', 1)]
    seeded = pd.read_csv(out / 'interaction_seeds.csv')
    assert sorted(seeded.seed.unique()) == [0, 1] and (out / 'seed_shares.png').stat().st_size > 10_000
    # the study store's run of each model carries the seed figure and table with the report
    from mlflow.tracking import MlflowClient
    client = MlflowClient(os.environ['MLFLOW_TRACKING_URI'])
    runs = client.search_runs([client.get_experiment_by_name('compare').experiment_id],
                              filter_string=f"tags.`moga_lab.key` = '{os.path.abspath(out)}:swin_femto'")
    assert len(runs) == 1
    assert {'seed_shares.png', 'seed_shares.csv', 'report.md'} <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    report = (out / 'report.md').read_text()
    assert '## Training seeds' in report and 'Test top-1 (%, 10k images) on each training seed' in report
    assert re.search(r'\| swin_femto \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \|', report), report
    assert 'The middle share of moganet_xtiny minus that of each model' in report
    assert re.search(r'\| swin_femto \| [+-]\d\.\d{3} \([+-]\d\.\d{3} to [+-]\d\.\d{3}\) \| [+-]\d\.\d{3} .* \| '
                     r'[+-]\d\.\d{3} \([+-]\d\.\d{3} to [+-]\d\.\d{3}\) \| (yes|no)', report), report
    assert re.search(r'!\[middle-order share of each model on each training seed \(2 test images.*28 px, 1 epoch of 6 '
                     r'batches at batch 32\)\]\(seed_shares\.png\)', report), report
    assert 'and ' in report and 'min for the later training seeds' in report
    assert 'copied from another study' not in report
    # MogaNet's seed-1 run copied in from the grid (trained there): the report names it as timed there
    config = out / 'moganet_xtiny' / 'seed1' / 'config.yaml'
    cfg = yaml.safe_load(config.read_text())
    cfg['trainer']['run_dir'] = 'studies/ablation_converged/full/seed1'
    config.write_text(yaml.safe_dump(cfg))
    done = _run('analysis/compare_models.py', base, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ('the curves of runs copied from another study were computed and timed there, not in this total: '
            'moganet_xtiny seed 1 (`studies/ablation_converged/full/seed1`)') in (out / 'report.md').read_text()


def test_shared_from_names_the_folder_a_copied_run_trained_in(tmp_path):
    from moga_lab.studies.common import shared_from

    def run(folder, trained_in):
        folder.mkdir(parents=True)
        (folder / 'config.yaml').write_text(yaml.safe_dump({'trainer': {'run_dir': trained_in, 'seed': 0}}))
        return str(folder)
    assert shared_from(run(tmp_path / 'cmp' / 'swin_femto', str(tmp_path / 'cmp' / 'swin_femto'))) is None
    # a study folder moved as a whole (or named relative to another directory) still trained in place
    assert shared_from(run(tmp_path / 'moved' / 'swin_femto', 'studies/cmp/swin_femto')) is None
    assert shared_from(run(tmp_path / 'moved' / 'swin_femto' / 'seed2', 'studies/cmp/swin_femto/seed2')) is None
    assert shared_from(run(tmp_path / 'cmp' / 'moganet_xtiny', 'studies/grid/full/seed0')) == 'studies/grid/full/seed0'
    assert shared_from(run(tmp_path / 'cmp' / 'moganet_xtiny' / 'seed1', 'studies/grid/full/seed1')) == \
        'studies/grid/full/seed1'
    assert shared_from(str(tmp_path / 'nothing')) is None


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


def _add_seconds(out, n):
    from moga_lab.studies.common import add_wall_time
    for _ in range(n):
        add_wall_time(out, 'interaction', 1.0)


def test_wall_times_added_by_two_processes_at_once_lose_nothing(tmp_path):
    """Two processes of one study (ablate.py on disjoint --rows) add their times to one wall_times.yaml: every
    addition counts (the read-add-write is locked), and the file stays readable YAML."""
    import multiprocessing

    import yaml
    ctx = multiprocessing.get_context('fork')
    procs = [ctx.Process(target=_add_seconds, args=(str(tmp_path), 100)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with open(tmp_path / 'wall_times.yaml') as f:
        assert yaml.safe_load(f) == {'interaction_seconds': 200.0}


def _cached_design(path, contexts=50, target_ci=float('nan'), n_players=49):
    """An interaction.csv as a study writes it, from a design with ``contexts`` contexts per pair and order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(dict(model='full', image_id=[1, 1], ratio=[0.0, 1.0], I2=[1.0, 2.0], I2_se=[0.1, 0.1],
                      J_abs=[1.0, 1.4], n_players=n_players, num_pairs=20, num_contexts=contexts,
                      target_ci=target_ci)).to_csv(path, index=False)


def test_finished_interaction_needs_every_image_of_every_name(tmp_path):
    from moga_lab.studies.common import finished_interaction
    cache = tmp_path / 'interaction.csv'
    assert finished_interaction(str(cache), ['a'], 2) is None              # no cache yet
    rows = pd.DataFrame({'model': ['a', 'a', 'b'], 'image_id': [3, 5, 3], 'I2': [0.1, 0.2, 0.3]})
    rows.to_csv(cache, index=False)
    assert list(finished_interaction(str(cache), ['a'], 2).image_id) == [3, 5]  # only the names asked for
    assert finished_interaction(str(cache), ['a', 'b'], 2) is None          # b has one image of two
    assert finished_interaction(str(cache), ['a'], 3) is None
    rows.drop(columns='I2').to_csv(cache, index=False)                      # before the debiased statistic: not finished
    assert finished_interaction(str(cache), ['a'], 2) is None


def test_interaction_cache_of_another_design_is_refused():
    """Cached per-image results are reused only for the same design: a curve never mixes two."""
    import tempfile

    from moga_lab.analysis.estimate import InteractionSettings
    from moga_lab.studies.common import check_interaction_cache
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / 'interaction.csv'
        same = InteractionSettings(grid=7, num_pairs=20, num_contexts=50, ratios=(0.0, 1.0))
        check_interaction_cache(None, same)
        check_interaction_cache(str(cache), same)  # nothing cached yet
        _cached_design(cache)
        check_interaction_cache(str(cache), same)
        for change, said in [(dict(num_contexts=12), 'num_contexts [50] (this run: 12)'),
                             (dict(grid=8), 'n_players [49] (this run: 64)'),
                             (dict(target_ci=0.28), 'target_ci [None] (this run: 0.28)'),
                             (dict(ratios=(0.0, 0.5, 1.0)), 'order ratios [0.0, 1.0]')]:
            other = InteractionSettings(**{**same.__dict__, **change})
            with pytest.raises(ValueError, match=re.escape(said)):
                check_interaction_cache(str(cache), other)


def test_studies_refuse_a_cache_of_another_design_before_training(tmp_path):
    """compare_models.py and ablate.py check the cached interaction results before any training: one line, exit 2,
    no run folder made."""
    out = tmp_path / 'cmp'
    _cached_design(out / 'convnext_atto' / 'interaction.csv', contexts=99)
    done = _run('analysis/compare_models.py', ['--epochs', '1', '--limit-train-batches', '1', '--contexts', '7',
                                               '--out', str(out), '--no-tracking'], tmp_path)
    assert done.returncode == 2 and 'holds interaction results of another design: num_contexts [99] (this run: 7)' \
        in done.stderr, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr and [str(p.relative_to(out)) for p in out.rglob('*')] == [
        'convnext_atto', 'convnext_atto/interaction.csv']
    grid = tmp_path / 'grid'
    _cached_design(grid / 'full' / 'interaction.csv', contexts=12)
    done = _run('experiments/ablate.py', ['--config', str(ROOT / 'tests/data/ablation_grid.yaml'),
                                          '--out', str(grid), '--no-tracking'], tmp_path)
    assert done.returncode == 2 and 'num_contexts [12] (this run: 50)' in done.stderr, done.stderr[-2000:]
    assert 'Traceback' not in done.stderr and sorted(p.name for p in (grid / 'full').iterdir()) == ['interaction.csv']
    # the same for a later seed's curves (--curve-seeds), before any training
    grid = tmp_path / 'grid3'
    _cached_design(grid / 'no_ca' / 'seed2' / 'interaction.csv', contexts=12, target_ci=0.1 * 32 ** 0.5)
    done = _run('experiments/ablate.py', ['--config', str(ROOT / 'tests/data/ablation_grid.yaml'),
                                          '--out', str(grid), '--no-tracking'], tmp_path)
    assert done.returncode == 2 and f'{grid / "no_ca" / "seed2" / "interaction.csv"}' in done.stderr, done.stderr[-2000:]
    assert 'num_contexts [12] (this run: 50)' in done.stderr and 'Traceback' not in done.stderr
    assert [str(p.relative_to(grid)) for p in grid.rglob('*')] == ['no_ca', 'no_ca/seed2', 'no_ca/seed2/interaction.csv']


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


def test_interaction_wall_time_is_added_per_cached_image(tmp_path, monkeypatch):
    """A study's interaction wall time is summed per cached (model, image): a run stopped part-way has added the time
    of the images it cached, a resumed run adds only the images it computes, and a finished one adds nothing."""
    import moga_lab.studies.common as studies
    from moga_lab.analysis.estimate import InteractionSettings
    from moga_lab.loaders import NamedModel
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 3)).eval()
    model = NamedModel(net, 'linear', 'test', 3, 1, 16, (0.0,), (1.0,), ('a', 'b', 'c'))
    images, labels = torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 2])
    settings = InteractionSettings(grid=4, num_pairs=2, num_contexts=2, ratios=(0.0, 0.5, 1.0))
    study = tmp_path / 'study'
    cache = study / 'row' / 'interaction.csv'
    real, calls = studies.interaction_strength, []

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    def stops_at_the_third_image(*args, **kwargs):
        calls.append(kwargs['image_ids'][0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is stopped while the third image is computed
        return slow(*args, **kwargs)

    def run(fn):
        monkeypatch.setattr(studies, 'interaction_strength', fn)
        return studies.interaction_of_models([model], images, labels, [10, 11, 12], settings, cache=str(cache),
                                             progress=False, wall_times=str(study))
    with pytest.raises(KeyboardInterrupt):
        run(stops_at_the_third_image)
    kept = studies.wall_time(str(study), 'interaction')
    assert 0.4 <= kept < 5  # the two finished images of >= 0.2 s each, added as each was cached
    frame = run(slow)
    assert sorted(frame.image_id.unique()) == [10, 11, 12]
    total = studies.wall_time(str(study), 'interaction')
    assert kept + 0.2 <= total < kept + 2  # only image 12 was added
    run(slow)  # everything cached: nothing computed, nothing added
    assert studies.wall_time(str(study), 'interaction') == total


def test_cam_summary_pairs_the_images_every_model_can_use():
    """mass_summary: gradcam.csv -> the per-model means, the paired differences and the garment area, over the images whose map is
    non-zero for every model (here images 0-2; image 3 has an all-zero map for convnext_atto)."""
    cmp = importlib.import_module('moga_lab.studies.comparison')
    names = ['moganet_xtiny', 'convnext_atto']
    table = pd.DataFrame(dict(model=np.repeat(names, 4), image_id=[3, 0, 1, 2, 0, 1, 2, 3],
                              cam_on_garment=[0.9, 0.6, 0.7, 0.8, 0.4, 0.5, 0.6, np.nan],
                              garment_area=[0.9, 0.3, 0.4, 0.5, 0.3, 0.4, 0.5, 0.9]))
    rows, diffs, area, n = mass_summary(table, names, seed=0)
    assert n == 3 and rows['moganet_xtiny'][0] == pytest.approx(0.7) and rows['convnext_atto'][0] == pytest.approx(0.5)
    assert diffs['convnext_atto'] == pytest.approx((0.2, 0.2, 0.2))   # the same +0.2 on every image: no spread
    assert area == pytest.approx(0.4)
    assert 'moganet_xtiny - convnext_atto: +0.200 (+0.200 to +0.200, decided)' in cmp._cam_text(
        'moganet_xtiny', diffs, area, n, 0)


def test_cam_on_garment_without_two_usable_images_says_so():
    """Models whose Grad-CAM maps are all zero (nothing supports the class) leave no image to measure: NaN and a
    sentence in the report, not a failure after hours of training."""
    cmp = importlib.import_module('moga_lab.studies.comparison')
    names = ['moganet_xtiny', 'convnext_atto']
    table = pd.DataFrame(dict(model=np.repeat(names, 8), image_id=np.tile(np.arange(8), 2), garment_area=0.4,
                              cam_on_garment=[0.5, 0.6] + [np.nan] * 6 + [np.nan, np.nan] + [0.3] * 6))
    rows, diffs, area, n = mass_summary(table, names, seed=0)
    assert n == 0 and all(np.isnan(v).all() for v in rows.values()) and np.isnan(diffs['convnext_atto']).all()
    assert 'not measured' in cmp._cam_text('moganet_xtiny', diffs, area, n, 0)
