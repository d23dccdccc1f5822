"""The study scripts end to end at their --quick settings (real Fashion-MNIST, a few steps per row)."""
import importlib
import os
import re
import shutil
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


def _synthetic_study(folder, accuracy, middle, px, report):
    """A published study folder whose per-image interaction tables have a known middle share per model:
    I2 = (middle if 0.2 <= ratio <= 0.6 else 1) + small per-image noise."""
    import numpy as np
    folder.mkdir(parents=True)
    pd.DataFrame(accuracy).to_csv(folder / 'accuracy.csv', index=False)
    rng = np.random.default_rng(0)
    rows = [dict(model=m, image_id=i, ratio=r, I2=(level if 0.2 <= r <= 0.6 else 1.0) * (1 + 0.01 * rng.standard_normal()),
                 J=1.0)
            for m, level in middle.items() for i in range(16) for r in (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)]
    pd.DataFrame(rows).to_csv(folder / 'interaction.csv', index=False)
    (folder / report).write_text(f'trained at {px} px\n')


def test_paper_claims_decide_by_construction(tmp_path):
    compare = {'model': ['moganet_xtiny', 'convnext_atto', 'swin_femto'], 'seed': [0, 0, 0],
               'test_top1': [92.5, 90.0, 92.4]}
    ablation = {'row': ['full'] * 3 + ['no_gating'] * 3 + ['no_ca'] * 3 + ['no_fd'] * 3, 'seed': [0, 1, 2] * 4,
                'test_top1': [92.0, 92.1, 91.9, 91.0, 91.1, 90.9, 92.0, 92.2, 91.8, 92.0, 92.1, 91.9]}
    # 28 px: MogaNet and full have the highest middle share; 56 px: gating stops mattering
    _synthetic_study(tmp_path / 'c28', compare, {'moganet_xtiny': 4.0, 'convnext_atto': 2.0, 'swin_femto': 1.0}, 28,
                     'report.md')
    _synthetic_study(tmp_path / 'a28', ablation, {'full': 4.0, 'no_gating': 2.0, 'no_ca': 4.0, 'no_fd': 6.0}, 28,
                     'ablation.md')
    # Grad-CAM mass on the object per image: MogaNet 0.1 above ConvNeXt on every image, level with Swin on average
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.6, 20)
    wiggle = 0.05 * rng.standard_normal(20)
    pd.DataFrame(dict(model=np.repeat(compare['model'], 20), image_id=np.tile(np.arange(20), 3), garment_area=0.45,
                      cam_on_garment=np.concatenate([base + 0.1, base, base + 0.1 + wiggle - wiggle.mean()]))
                 ).to_csv(tmp_path / 'c28' / 'gradcam.csv', index=False)
    # curves on three seeds' checkpoints: gating's effect holds on every seed, CA's only on seed 0's
    from test_seeds import seeded_table
    seeded_table({'full': [4.0, 4.4, 3.6], 'no_gating': [2.0, 2.2, 1.8], 'no_ca': [2.0, 6.0, 9.0]}).to_csv(
        tmp_path / 'a28' / 'interaction_seeds.csv', index=False)
    one_seed = {'row': ['full', 'no_gating', 'no_ca'], 'seed': [0, 0, 0], 'test_top1': [92.0, 91.0, 92.0]}
    _synthetic_study(tmp_path / 'a56', one_seed, {'full': 4.0, 'no_gating': 4.0, 'no_ca': 4.0}, 56, 'ablation.md')
    out = tmp_path / 'claims.md'
    assert importlib.import_module('moga_lab.cli.claims').main([
        '--compare', str(tmp_path / 'c28'), '--ablation', str(tmp_path / 'a28'), '--ablation', str(tmp_path / 'a56'),
        '--out', str(out)]) == 0

    def status(claim, px=28):
        return next(line for line in out.read_text().splitlines()
                    if f'| {claim}' in line and line.split('|')[1].strip() == str(px)).split('|')[4].strip()
    assert status('MogaNet has a larger middle-order share than convnext_atto on the seed-0 checkpoints') == \
        'decided: MogaNet higher (as the paper says)'
    # 92.5 vs 92.4 % on 10k images: the binomial interval contains 0
    assert status('MogaNet is more accurate than swin_femto').startswith('not decided')
    assert status('MogaNet is more accurate than convnext_atto') == 'decided: MogaNet more accurate'
    assert status("MogaNet's Grad-CAM puts more of its mass on the object than convnext_atto's") == \
        "decided: MogaNet more on the object (as the paper's Grad-CAM shows)"
    assert status("MogaNet's Grad-CAM puts more of its mass on the object than swin_femto's").startswith('not decided')
    assert 'moganet_xtiny - convnext_atto: +0.100 (+0.100 to +0.100), 20 images (an evenly spread map: 0.450)' \
        in out.read_text()
    seed0 = 'raises middle-order interactions on the seed-0 checkpoints'
    assert status(f'Gating {seed0} (full vs no_gating)') == 'decided: raises (as the paper says)'
    assert status(f'Channel aggregation {seed0} (full vs no_ca)').startswith('not decided')
    # a switch the paper's interaction ablation does not cover: no "against the paper"
    assert status(f'Feature decomposition {seed0} (full vs no_fd)') == 'decided: lowers'
    assert status('The full model is more accurate than no_gating') == 'decided: full more accurate'
    across = 'raises middle-order interactions across training seeds'
    assert status(f'Gating {across} (full vs no_gating)') == 'decided: raises (as the paper says)'
    assert status(f'Channel aggregation {across} (full vs no_ca)').startswith('not decided')
    assert '(decided: higher on 1 of 3 seeds, lower on 2); mean over seeds' in out.read_text()  # CA: a seed lottery
    assert not [line for line in out.read_text().splitlines()   # the 56 px grid has curves of one seed only
                if across in line and line.split('|')[1].strip() != '28']
    assert status('The full model is more accurate than no_gating', 56) == 'one seed, not decided'
    assert status(f'Gating {seed0} (full vs no_gating)', 56).startswith('not decided')
    assert status(f'Gating {seed0} (full vs no_gating)', 'both') == 'decided at 28 px only'
    assert status(f'Channel aggregation {seed0} (full vs no_ca)', 'both') == 'not decided at either resolution'
    assert status('The full model is more accurate than no_gating', 'both') == 'decided at 28 px only'
    assert status('The full model is more accurate than no_ca', 'both') == 'not decided at either resolution'
    # at 56 px no CA's seed-0 share is higher than full's (decided lowers) where 28 px's seed 0 decides nothing; CA
    # is a seed lottery at 28 px (higher on 1 of 3 seeds, lower on 2): the seed-0 difference is not put on resolution
    shutil.rmtree(tmp_path / 'a56')
    _synthetic_study(tmp_path / 'a56', one_seed, {'full': 4.0, 'no_gating': 4.0, 'no_ca': 6.0}, 56, 'ablation.md')
    assert importlib.import_module('moga_lab.cli.claims').main([
        '--compare', str(tmp_path / 'c28'), '--ablation', str(tmp_path / 'a28'), '--ablation', str(tmp_path / 'a56'),
        '--out', str(out)]) == 0
    assert status(f'Channel aggregation {seed0} (full vs no_ca)', 'both') == (
        'decided at 56 px only; one seed per resolution, and at 28 px its verdict also flips between training seeds '
        '(higher on 1 of 3, lower on 2): not shown to be an effect of resolution')
    # gating holds on every 28 px seed: no caveat
    assert status(f'Gating {seed0} (full vs no_gating)', 'both') == 'decided at 28 px only'

    # a comparison whose MogaNet *is* the grid's full seed-0 run (the 3-epoch comparison): MogaNet on every grid seed
    seeded = pd.read_csv(tmp_path / 'a28' / 'interaction_seeds.csv')
    peers = seeded_table({'convnext_atto': [2.0], 'swin_femto': [4.0]}, seed=5).drop(columns='seed')
    _synthetic_study(tmp_path / 'c28b', compare, {}, 28, 'report.md')
    pd.concat([seeded[(seeded.model == 'full') & (seeded.seed == 0)].drop(columns='seed').assign(model='moganet_xtiny'),
               peers]).to_csv(tmp_path / 'c28b' / 'interaction.csv', index=False)
    assert importlib.import_module('moga_lab.cli.claims').main([
        '--compare', str(tmp_path / 'c28b'), '--ablation', str(tmp_path / 'a28'), '--out', str(out)]) == 0
    each = "on each of MogaNet's training seeds"
    # full's seeds at 4.0 / 4.4 / 3.6 against ConvNeXt at 2.0: higher on all; against Swin at 4.0: higher on seed 1
    # (4.4), lower on seed 2 (3.6)
    assert status(f'MogaNet has a larger middle-order share than convnext_atto {each}').startswith(
        'decided on every MogaNet seed: MogaNet higher')
    assert status(f'MogaNet has a larger middle-order share than swin_femto {each}') == \
        'decided higher on 1 of 3 MogaNet seeds, lower on 1: not decided on every seed'
    assert 'moganet_xtiny - convnext_atto with MogaNet on seed 0: +' in out.read_text()
    # a 56 px comparison where MogaNet's seed-0 share is above Swin's: a difference from 28 px's seed 0 that 28 px's
    # MogaNet seeds already show (higher than Swin on one seed, lower on another)
    _synthetic_study(tmp_path / 'c56', compare, {'moganet_xtiny': 4.0, 'convnext_atto': 2.0, 'swin_femto': 2.0}, 56,
                     'report.md')
    assert importlib.import_module('moga_lab.cli.claims').main([
        '--compare', str(tmp_path / 'c28b'), '--ablation', str(tmp_path / 'a28'), '--compare', str(tmp_path / 'c56'),
        '--out', str(out)]) == 0
    assert status('MogaNet has a larger middle-order share than swin_femto on the seed-0 checkpoints', 'both') == (
        'decided at 56 px only; one seed per resolution, and at 28 px its verdict also flips between training seeds '
        '(higher on 1 of 3, lower on 1): not shown to be an effect of resolution')
    assert status('MogaNet has a larger middle-order share than convnext_atto on the seed-0 checkpoints', 'both') == \
        'same at both resolutions'
    # one strength off by a millionth: another checkpoint or design than the grid's full seed 0, no per-seed pairing
    table = pd.read_csv(tmp_path / 'c28b' / 'interaction.csv')
    table.loc[0, 'I2'] *= 1 + 1e-6
    table.to_csv(tmp_path / 'c28b' / 'interaction.csv', index=False)
    assert importlib.import_module('moga_lab.cli.claims').main([
        '--compare', str(tmp_path / 'c28b'), '--ablation', str(tmp_path / 'a28'), '--out', str(out)]) == 0
    assert f'convnext_atto {each}' not in out.read_text()
    assert re.search(r'share than swin_femto on the seed-0 checkpoints +\|', out.read_text())
    # a comparison table without the debiased columns cannot be matched to the grid's run: no pairing, no traceback
    assert importlib.import_module('moga_lab.cli.claims').moga_seed_claims(table.drop(columns='I2'), seeded, 28) == []


def test_paper_claims_name_the_seed_whose_checkpoints_the_curves_are_on(tmp_path):
    from test_seeds import seeded_table
    paper_claims = importlib.import_module('moga_lab.cli.claims')
    out = tmp_path / 'claims.md'
    # a grid listing its seeds as 2, 0, 1 (ablate.py computes the curves on the first): seed 2's checkpoints
    grid = {'row': ['full'] * 3 + ['no_gating'] * 3, 'seed': [2, 0, 1] * 2, 'test_top1': [92.0, 92.1, 91.9, 91.0, 91.1, 90.9]}
    _synthetic_study(tmp_path / 'g', grid, {'full': 4.0, 'no_gating': 2.0}, 28, 'ablation.md')
    assert paper_claims.main(['--ablation', str(tmp_path / 'g'), '--out', str(out)]) == 0
    assert 'Gating raises middle-order interactions on the seed-2 checkpoints (full vs no_gating)' in out.read_text()
    # with seed curves published, the seed whose curves interaction.csv holds says it (here seed 1's)
    seeded = seeded_table({'full': [4.0, 4.4, 3.6], 'no_gating': [2.0, 2.2, 1.8]})
    seeded.to_csv(tmp_path / 'g' / 'interaction_seeds.csv', index=False)
    seeded[seeded.seed == 1].drop(columns='seed').to_csv(tmp_path / 'g' / 'interaction.csv', index=False)
    assert paper_claims.main(['--ablation', str(tmp_path / 'g'), '--out', str(out)]) == 0
    assert 'Gating raises middle-order interactions on the seed-1 checkpoints (full vs no_gating)' in out.read_text()


def test_paper_claims_across_seeds_of_every_compared_model(tmp_path):
    """A comparison with curves and top-1 on three training seeds of every model (compare_models.py --train-seeds):
    the middle-share and accuracy claims are decided across seeds (Welch), and the per-MogaNet-seed claims give way."""
    from test_seeds import seeded_table
    seeded = seeded_table({'moganet_xtiny': [4.0, 4.4, 3.6], 'convnext_atto': [2.0, 2.1, 1.9],
                           'swin_femto': [4.0, 4.8, 3.2]})
    accuracy = {'model': ['moganet_xtiny', 'convnext_atto', 'swin_femto'] * 3, 'seed': [0] * 3 + [1] * 3 + [2] * 3,
                'test_top1': [92.5, 90.0, 92.4, 92.6, 90.1, 92.9, 92.4, 89.9, 91.9]}
    _synthetic_study(tmp_path / 'c', accuracy, {}, 28, 'report.md')
    seeded[seeded.seed == 0].drop(columns='seed').to_csv(tmp_path / 'c' / 'interaction.csv', index=False)
    seeded.to_csv(tmp_path / 'c' / 'interaction_seeds.csv', index=False)
    out = tmp_path / 'claims.md'
    assert importlib.import_module('moga_lab.cli.claims').main(['--compare', str(tmp_path / 'c'), '--out', str(out)]) == 0
    text = out.read_text()

    def status(claim):
        return next(line for line in text.splitlines() if f'| {claim} ' in line).split('|')[4].strip()
    across = 'across training seeds (both models)'
    assert status(f'MogaNet has a larger middle-order share than convnext_atto {across}') == \
        'decided: MogaNet higher (as the paper says)'
    assert status(f'MogaNet has a larger middle-order share than swin_femto {across}').startswith('not decided')
    assert '(decided: higher on 3 of 3 seeds, lower on 0)' in text
    # top-1 from the seeds: 92.50 vs 90.00 (s.d. 0.1 each) decided; 92.50 vs 92.40 (s.d. 0.5) not
    assert status('MogaNet is more accurate than convnext_atto') == 'decided: MogaNet more accurate'
    assert status('MogaNet is more accurate than swin_femto').startswith('not decided')
    assert 'top-1 92.50 vs 90.00 % (3 / 3 seeds): +2.50 (' in text and 'Welch over the seeds' in text
    claims = [line for line in text.splitlines() if line.startswith('|')]
    assert not [line for line in claims if 'test-set sampling only' in line or "on each of MogaNet's training" in line]


def test_paper_claims_missing_artefacts_is_one_line(tmp_path, capsys):
    (tmp_path / 'c').mkdir()
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module('moga_lab.cli.claims').main(['--compare', str(tmp_path / 'c')])
    assert exit_.value.code == 2 and 'missing accuracy.csv, interaction.csv' in capsys.readouterr().err


def test_paper_claims_two_studies_at_one_resolution_is_one_line(tmp_path, capsys):
    # e.g. the 6-epoch and the 3-epoch comparison, both at 28 px: their verdicts would merge under one key
    compare = {'model': ['moganet_xtiny', 'convnext_atto'], 'seed': [0, 0], 'test_top1': [92.5, 90.0]}
    for name in ('c6', 'c3'):
        _synthetic_study(tmp_path / name, compare, {'moganet_xtiny': 4.0, 'convnext_atto': 2.0}, 28, 'report.md')
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module('moga_lab.cli.claims').main(['--compare', str(tmp_path / 'c6'), '--compare', str(tmp_path / 'c3'),
                                                      '--out', str(tmp_path / 'claims.md')])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and 'are both at 28 px; accepted: one --compare folder per resolution' in err
    assert err.strip().count('\n') == 0 and not (tmp_path / 'claims.md').exists()  # one line: the error


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

    from moga_lab.analysis.games import InteractionSettings
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
    from moga_lab.analysis.games import describe_precision, per_image_target
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
    from moga_lab.analysis.games import InteractionSettings
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
