"""Multi-order interactions against closed forms; exact vs Monte-Carlo; the image game on real models."""
import math

import pytest
import torch

from moga_lab.analysis.coalitions import sample_pairs
from moga_lab.analysis.curves import middle_order_share, strength_curve
from moga_lab.analysis.estimate import InteractionSettings, interaction_strength
from moga_lab.analysis.game import ImageGame, logits_to_value
from moga_lab.analysis.interaction import (EXACT_MAX_PLAYERS, exact_multi_order_interaction,
                                           multi_order_interaction, order_grid, sample_contexts)


def and_game(K):
    """v(S) = 1 if K is inside S else 0."""
    K = torch.tensor(sorted(K))
    return lambda masks: masks[:, K].all(1).double()


@pytest.mark.parametrize('n,K', [(8, (1, 3, 6)), (10, (0, 2)), (9, (2, 4, 5, 7))])
def test_exact_matches_closed_form_for_and_game(n, K):
    k = len(K)
    pairs = torch.tensor([[K[0], K[1]], [K[0], next(p for p in range(n) if p not in K)]])
    orders = list(range(n - 1))
    I = exact_multi_order_interaction(and_game(K), n, pairs, orders)
    for o, m in enumerate(orders):
        expected = math.comb(n - k, m - k + 2) / math.comb(n - 2, m) if m >= k - 2 else 0.0
        assert I[o, 0].item() == pytest.approx(expected, abs=1e-12)
        assert I[o, 1].item() == pytest.approx(0.0, abs=1e-12)  # a player outside K never interacts


def test_additive_game_has_no_interaction():
    w = torch.randn(9, dtype=torch.float64)
    game = lambda masks: masks.double() @ w  # noqa: E731
    pairs = torch.tensor([[0, 1], [2, 8], [5, 3]])
    I = exact_multi_order_interaction(game, 9, pairs, range(8))
    assert I.abs().max() < 1e-12
    mc, se = multi_order_interaction(game, 9, pairs, [0, 3, 7], num_contexts=10)
    assert mc.abs().max() < 1e-12


def test_pairwise_game_gives_the_pair_weight_at_every_order():
    n = 7
    w = torch.randn(n, n, dtype=torch.float64).triu(1)
    game = lambda masks: torch.einsum('bi,ij,bj->b', masks.double(), w, masks.double())  # noqa: E731
    pairs = torch.tensor([[0, 4], [2, 5]])
    I = exact_multi_order_interaction(game, n, pairs, range(n - 1))
    for p, (i, j) in enumerate(pairs.tolist()):
        torch.testing.assert_close(I[:, p], torch.full((n - 1,), (w[i, j] + w[j, i]).item(), dtype=torch.float64))


def test_monte_carlo_agrees_with_exact_within_standard_error():
    torch.manual_seed(0)
    n = 10
    # a game with interactions of every order: a small random MLP over the mask
    net = torch.nn.Sequential(torch.nn.Linear(n, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    game = lambda masks: net(masks.double()).squeeze(-1).detach()  # noqa: E731
    pairs = torch.tensor([[0, 1], [3, 7], [2, 9]])
    orders = [0, 2, 4, 6, 8]
    exact = exact_multi_order_interaction(game, n, pairs, orders)
    mc, se = multi_order_interaction(game, n, pairs, orders, num_contexts=400,
                                     generator=torch.Generator().manual_seed(1))
    inner = (slice(1, 4), slice(None))  # orders 0 and n-2 have a single context: MC is exact there
    z = ((mc - exact) / se)[inner]
    assert z.abs().max() < 4.5, z
    assert (z.abs() < 2).float().mean() > 0.75  # ~95 % of |z| < 2 for a calibrated SE
    torch.testing.assert_close(mc[0], exact[0])
    torch.testing.assert_close(mc[-1], exact[-1])


def test_contexts_have_the_right_size_and_exclude_the_pair():
    pairs = torch.tensor([[0, 5], [3, 4]])
    ctx = sample_contexts(12, pairs, [0, 3, 10], 20, generator=torch.Generator().manual_seed(0))
    assert ctx.shape == (3, 2, 20, 12)
    assert (ctx.sum(-1) == torch.tensor([0, 3, 10]).view(3, 1, 1)).all()
    for p, (i, j) in enumerate(pairs.tolist()):
        assert not ctx[:, p, :, i].any() and not ctx[:, p, :, j].any()


def test_shared_coalitions_are_evaluated_once():
    calls = []

    def game(masks):
        calls.append(len(masks))
        return masks.double().sum(1)

    pairs = torch.tensor([[0, 1], [0, 2], [3, 4]])
    multi_order_interaction(game, 6, pairs, [0], num_contexts=5)
    # order 0: S is empty for every context; distinct coalitions: {} + {0} {1} {2} {3} {4} + 3 pairs = 9
    assert sum(calls) == 9


def test_bad_inputs_are_clear():
    g = and_game((0, 1))
    with pytest.raises(ValueError, match=f'above the limit of {EXACT_MAX_PLAYERS}'):
        exact_multi_order_interaction(g, 30, torch.tensor([[0, 1]]), [0])
    with pytest.raises(ValueError, match=r'orders \[9\] are out of range; accepted: 0 <= m <= n_players - 2 = 6'):
        multi_order_interaction(g, 8, torch.tensor([[0, 1]]), [9], 4)
    with pytest.raises(ValueError, match='two different players'):
        multi_order_interaction(g, 8, torch.tensor([[1, 1]]), [0], 4)


def test_order_grid_matches_the_authors():
    assert order_grid(196, [0, .05, .1, .5, .95, 1]) == [0, 9, 19, 97, 184, 194]


def test_pairs_are_neighbours_within_chebyshev_two():
    pairs = sample_pairs(7, 500, radius=2, generator=torch.Generator().manual_seed(0))
    r, c = pairs // 7, pairs % 7
    cheb = torch.maximum((r[:, 0] - r[:, 1]).abs(), (c[:, 0] - c[:, 1]).abs())
    assert ((cheb >= 1) & (cheb <= 2)).all()
    assert len(set(pairs[:, 0].tolist())) > 40  # i covers the grid


def test_log_odds_value():
    logits = torch.tensor([[2.0, 0.5, -1.0]])
    p = logits.softmax(-1)[0, 0]
    assert logits_to_value(logits, 0).item() == pytest.approx(math.log(p / (1 - p)), rel=1e-6)
    assert logits_to_value(logits, 0, 'logit').item() == 2.0
    assert logits_to_value(logits, 0, 'log-p').item() == pytest.approx(math.log(p), rel=1e-6)


class OnlyTopLeft(torch.nn.Module):
    """Logit of class 0 = product of the means of two top-left patches (an AND of two players)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        a = x[:, 0, 0:4, 0:4].mean((1, 2))
        b = x[:, 0, 0:4, 4:8].mean((1, 2))
        return torch.stack([10 * a * b, torch.zeros_like(a)], 1)


def test_image_game_masks_patches_with_the_baseline():
    image = torch.ones(1, 8, 8)
    game = ImageGame(OnlyTopLeft(), image, 0, grid=2, baseline=0.0, value='logit')
    masks = torch.tensor([[True, True, False, False], [True, False, True, True], [False, False, False, False]])
    x = game.inputs(masks)
    assert x[0, 0, :4, :].eq(1).all() and x[0, 0, 4:, :].eq(0).all()
    # a 2x2 grid of 4x4 patches: players 0 and 1 are the two top patches the model multiplies
    torch.testing.assert_close(game(masks), torch.tensor([10.0, 0.0, 0.0]))
    I = exact_multi_order_interaction(game, 4, torch.tensor([[0, 1], [0, 2]]), [0, 1, 2])
    torch.testing.assert_close(I[:, 0], torch.full((3,), 10.0, dtype=torch.float64))
    torch.testing.assert_close(I[:, 1], torch.zeros(3, dtype=torch.float64))


def test_interaction_strength_table_and_curve_on_moganet():
    from moga_lab.models import MogaNet
    torch.manual_seed(0)
    model = MogaNet('xtiny', num_classes=10, in_chans=1, stem_stride=2).eval()
    images, labels = torch.randn(2, 1, 28, 28), torch.tensor([3, 7])
    settings = InteractionSettings(grid=7, num_pairs=3, num_contexts=4, ratios=(0.0, 0.5, 1.0), batch_size=128)
    df = interaction_strength(model, images, labels, settings, model_name='xt')
    assert list(df.columns[:6]) == ['model', 'image_id', 'label', 'order', 'ratio', 'J']
    assert len(df) == 2 * 3 and set(df.order) == {0, 23, 47}
    assert (df.J >= 0).all() and (df.J_se >= 0).all()
    again = interaction_strength(model, images, labels, settings, model_name='xt')
    torch.testing.assert_close(torch.tensor(df.J.values), torch.tensor(again.J.values))  # same draws
    curve = strength_curve(df, num_bootstrap=50)
    assert curve.J_norm.mean() == pytest.approx(1.0)
    assert (curve.ci_low <= curve.J_norm + 1e-9).all() and (curve.J_norm <= curve.ci_high + 1e-9).all()
    share = middle_order_share(curve)
    assert 0 < share['xt'] < 1


# ---- the command-line tool and the training callback ------------------------------------------------
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def two_checkpoints(tmp_path_factory):
    """A MogaNet and a ConvNeXt trained for a few steps on the synthetic set (16 px, 4 classes)."""
    from moga_lab.cli import fit as fit_cli
    root = tmp_path_factory.mktemp('ckpts')
    os.environ.pop('MOGA_LAB_RUN_DIR', None)
    paths = []
    for model in ('moganet_xtiny', 'convnext_atto'):
        args = ['--model', model, '--data', 'synthetic', '--batch-size', '16', '--epochs', '1',
                '--limit-train-batches', '4', '--no-progress', '--run-dir', str(root / model)]
        assert fit_cli.main(args) == 0
        os.environ.pop('MOGA_LAB_RUN_DIR', None)
        paths.append(str(root / model / 'best.ckpt'))
    return paths


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'moga_lab.cli.interaction', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


SMALL = ['--pairs', '3', '--contexts', '3', '--ratios', '0,0.3,0.6,1', '--grid', '4', '--no-progress']


def test_interaction_tool_two_models_same_draws_and_resume(two_checkpoints, tmp_path):
    from moga_lab.cli import interaction as tool
    out = tmp_path / 'out'
    args = ['--checkpoint', two_checkpoints[0], '--checkpoint', two_checkpoints[1], '--num-images', '3',
            '--out', str(out)] + SMALL
    assert tool.main(args) == 0
    frame = pd.read_csv(out / 'interaction.csv')
    assert set(frame.model) == {'moganet_xtiny', 'convnext_atto'}
    assert len(frame) == 2 * 3 * 4
    # the same images for both models
    assert set(frame[frame.model == 'moganet_xtiny'].image_id) == set(frame[frame.model == 'convnext_atto'].image_id)
    assert (out / 'interaction.parquet').is_file() and (out / 'curve.csv').is_file()
    assert (out / 'interaction_curves.png').stat().st_size > 10_000
    # resume: drop one image's rows from the part file, run again -> only that one is recomputed, same numbers
    part = out / 'parts' / 'rank0.csv'
    full = pd.read_csv(part)
    first = full.image_id.iloc[0]
    full[full.image_id != first].to_csv(part, index=False)
    assert tool.main(args) == 0
    again = pd.read_csv(out / 'interaction.csv')
    merged = frame.merge(again, on=['model', 'image_id', 'ratio'], suffixes=('', '_again'))
    assert len(merged) == len(frame)
    assert (merged.J - merged.J_again).abs().max() < 1e-6


def test_interaction_tool_killed_run_resumes(two_checkpoints, tmp_path, capsys):
    out = tmp_path / 'killed'
    args = ['--checkpoint', two_checkpoints[0], '--num-images', '6', '--out', str(out)] + SMALL
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, '-m', 'moga_lab.cli.interaction', *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = out / 'parts' / 'rank0.csv'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not part.is_file():
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(part) if part.is_file() else pd.DataFrame(columns=['image_id'])
    assert before.image_id.nunique() < 6  # killed before the end; every row written is whole
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(out / 'interaction.csv')
    assert frame.image_id.nunique() == 6 and len(frame) == 6 * 4
    # resuming with another design is refused in one line: the curve would mix two designs
    from moga_lab.cli import interaction as tool
    with pytest.raises(SystemExit) as stop:
        tool.main(args + ['--contexts', '5'])
    assert stop.value.code == 2
    assert 'holds interaction results of another design: num_contexts [3] (this run: 5)' in capsys.readouterr().err
    assert pd.read_csv(out / 'interaction.csv').equals(frame)


def test_interaction_tool_spreads_images_over_ddp_ranks(two_checkpoints, tmp_path):
    out = tmp_path / 'ddp'
    args = ['--checkpoint', two_checkpoints[0], '--num-images', '4', '--out', str(out), '--devices', '2'] + SMALL
    done = _cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = sorted(p.name for p in (out / 'parts').iterdir())
    assert parts == ['rank0.csv', 'rank1.csv']
    frame = pd.read_csv(out / 'interaction.csv')
    assert frame.image_id.nunique() == 4
    # the same numbers as one process
    single = tmp_path / 'single'
    from moga_lab.cli import interaction as tool
    assert tool.main(['--checkpoint', two_checkpoints[0], '--num-images', '4', '--out', str(single)] + SMALL) == 0
    one = pd.read_csv(single / 'interaction.csv').sort_values(['image_id', 'ratio']).J.to_numpy()
    assert abs(frame.sort_values(['image_id', 'ratio']).J.to_numpy() - one).max() < 1e-5


def test_interaction_tool_precision_mode_naive_curve_and_old_parts(two_checkpoints, tmp_path, capsys):
    from moga_lab.cli import interaction as tool
    out = tmp_path / 'precise'
    (out / 'parts').mkdir(parents=True)
    # a part file from before the debiased statistic (no I2 column): recomputed, not mixed in
    pd.DataFrame(dict(model=['moganet_xtiny'], image_id=[0], ratio=[0.0], J=[1.0])).to_csv(out / 'parts' / 'rank0.csv',
                                                                                          index=False)
    args = ['--checkpoint', two_checkpoints[0], '--num-images', '2', '--out', str(out), '--target-ci', '0.5',
            '--max-forwards', '300', '--statistic', 'naive', '--target-over', 'images'] + SMALL
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    # over 2 images, each image is held to 0.5 * sqrt(2)
    assert "budget: a pilot that planned the contexts for each image's 95 % interval at every order to be within 70.7 % of" in printed
    assert 'moganet_xtiny: Monte-Carlo precision of the curve over 2 images: 95 % half-width at most' in printed
    frame = pd.read_csv(out / 'interaction.csv')
    assert frame.image_id.nunique() == 2 and frame.I2.notna().all()
    assert (frame.forwards <= 300).all() and (frame.target_ci - 0.5 * 2 ** 0.5).abs().max() < 1e-9
    curve = pd.read_csv(out / 'curve.csv')
    assert (curve.statistic == 'naive').all() and curve.noise_floor_norm.notna().all()


@pytest.mark.parametrize('args,needle', [
    (['--target-ci', '0'], '--target-ci=0.0 is out of range; accepted: a fraction in (0, 1]'),
    (['--max-forwards', '2'], '--max-forwards=2 must be >= 4'),
    (['--statistic', 'median'], "'median' is not accepted; accepted: auto, mean-abs, rms, naive"),
    (['--budget', '-5'], '--budget=-5.0 is not accepted; accepted: forward passes per image, > 0'),
    (['--design', 'fixed', '--budget', '500'], '--design fixed is not accepted with them: accepted: --design shared'),
    (['--design', 'two-phase'], 'the two-phase design needs target_ci'),
    (['--share', '0'], "'0' is not accepted; accepted: an integer >= 1, or all"),
    (['--budget', '500', '--target-share-se', '0.01'], 'give --budget or --target-share-se, not both'),
    (['--num-images', '0'], '--num-images=0 must be >= 1'),
    (['--value', 'prob'], "'prob' is not accepted; accepted: log-odds, logit, log-p"),
    (['--ratios', '0,1.5'], '--ratios [1.5] out of range'),
])
def test_interaction_tool_errors(two_checkpoints, tmp_path, capsys, args, needle):
    from moga_lab.cli import interaction as tool
    with pytest.raises(SystemExit) as info:
        tool.main(['--checkpoint', two_checkpoints[0], '--out', str(tmp_path)] + args)
    assert info.value.code == 2 and needle in capsys.readouterr().err


def test_interaction_tool_plans_the_shared_design_and_chooses_the_statistic(two_checkpoints, tmp_path, capsys):
    """--budget plans the shared design from a pilot (printed, written to plan.txt, the same plan for both models) and
    runs it; --statistic auto shows the RMS first when mean |I|'s bias bound is large at that design, and says so."""
    from moga_lab.cli import interaction as tool
    out = tmp_path / 'planned'
    args = ['--checkpoint', two_checkpoints[0], '--checkpoint', two_checkpoints[1], '--num-images', '2',
            '--budget', '600', '--pilot-images', '1', '--out', str(out), '--ratios', '0,0.3,0.6,1', '--grid', '4',
            '--no-progress']
    assert tool.main(args) == 0
    err = capsys.readouterr().err
    assert 'plan (rms):' in err and 'pairs per image' in err and (out / 'plan.txt').read_text().startswith('plan (rms)')
    frame = pd.read_csv(out / 'interaction.csv')
    assert set(frame.design) == {'shared'} and frame.num_pairs.nunique() == 1 and 'I2_df' in frame.columns
    assert frame.groupby('model').forwards.mean().max() < 1000
    curve = pd.read_csv(out / 'curve.csv')
    over = 'the bias bound of mean |I| is' in err
    assert set(curve.statistic) == ({'rms'} if over else {'mean-abs'})
    # resuming the same plan continues; another design is refused
    assert tool.main(args) == 0
    with pytest.raises(SystemExit):
        tool.main(args[:6] + ['--out', str(out), '--ratios', '0,0.3,0.6,1', '--grid', '4', '--no-progress'])
    assert "design ['shared'] (this run: fixed)" in capsys.readouterr().err


def test_missing_checkpoint_is_clear(tmp_path, capsys):
    from moga_lab.cli import interaction as tool
    with pytest.raises(SystemExit):
        tool.main(['--checkpoint', str(tmp_path / 'no.ckpt'), '--out', str(tmp_path)])
    assert "checkpoint '" in capsys.readouterr().err


def test_callback_logs_the_curve_during_training(tmp_path):
    from moga_lab.cli import fit as fit_cli
    os.environ.pop('MOGA_LAB_RUN_DIR', None)
    args = ['--variant', 'xt', '--data', 'synthetic', '--batch-size', '16', '--epochs', '2', '--limit-train-batches',
            '2', '--no-progress', '--interaction-every', '1', '--interaction-images', '2', '--run-dir', str(tmp_path)]
    assert fit_cli.main(args) == 0
    frame = pd.read_csv(tmp_path / 'interaction_by_epoch.csv')
    assert sorted(frame.epoch.unique()) == [0, 1] and len(frame) == 2 * 13
    metrics = pd.read_csv(tmp_path / 'metrics.csv')
    assert metrics['interaction/middle_share'].notna().sum() == 2
    assert (tmp_path / 'interaction_by_epoch.png').is_file()


def test_flat_middle_share_counts_sampled_orders_in_band():
    import pandas as pd
    from moga_lab.analysis.curves import flat_middle_share
    ratios = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
    curve = pd.DataFrame(dict(model='m', ratio=ratios, J_norm=range(1, 14)))
    assert flat_middle_share(curve, 0.2, 0.6) == 5 / 13  # 0.2, 0.3, 0.4, 0.5, 0.6 of 13 sampled orders


def test_cli_number_parsers_name_the_bad_value():
    import argparse
    from moga_lab.cli.common import int_at_least, positive_float, unit_fraction
    assert positive_float('0.25') == 0.25 and unit_fraction('0') == 0.0 and int_at_least(16)('16') == 16
    for parse, bad in ((positive_float, '0'), (positive_float, 'x'), (unit_fraction, '1'), (unit_fraction, '-0.1'),
                       (int_at_least(16), '15'), (int_at_least(16), '20.5')):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            parse(bad)


def test_interaction_panels_one_panel_per_model(tmp_path):
    from PIL import Image
    from moga_lab.analysis.plots import plot_interaction_panels
    ratios = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = [dict(model=f'm{k}', ratio=r, J_norm=1 + 0.1 * k * r, ci_low=0.9, ci_high=1.2 + 0.1 * k, num_images=2)
            for k in range(5) for r in ratios]
    curve = pd.DataFrame(rows)
    plot_interaction_panels(curve, str(tmp_path / 'five.png'), reference='m2')
    plot_interaction_panels(curve[curve.model != 'm4'], str(tmp_path / 'four.png'))
    five, four = Image.open(tmp_path / 'five.png'), Image.open(tmp_path / 'four.png')
    assert five.size[1] > 1.6 * four.size[1]  # 5 panels at 4 per row: a second row
    assert abs(five.size[0] - four.size[0]) < 0.1 * four.size[0]
    with pytest.raises(ValueError, match="'nope'.*accepted: m0, m1"):
        plot_interaction_panels(curve, str(tmp_path / 'x.png'), reference='nope')


def test_interaction_panels_take_readable_titles(tmp_path, monkeypatch):
    from moga_lab.analysis import plots
    seen = {}
    monkeypatch.setattr(plots, 'save_figure', lambda fig, path: seen.update(
        titles=[ax.get_title() for ax in fig.axes if ax.get_visible()], suptitle=fig._suptitle.get_text()))
    curve = pd.DataFrame([dict(model=m, ratio=r, J_norm=1.0, ci_low=0.9, ci_high=1.1) for m in ('full', 'no_ca')
                          for r in (0.0, 0.5, 1.0)])
    plots.plot_interaction_panels(curve, str(tmp_path / 'p.png'),
                                  labels={'full': 'full\npaper default', 'no_ca': 'no_ca\nchannel_aggregation=False'})
    assert seen['titles'] == ['full\npaper default', 'no_ca\nchannel_aggregation=False']
    assert 'dashed grey: full;' in seen['suptitle']  # first line of the reference's label only
    plots.plot_interaction_panels(curve, str(tmp_path / 'p.png'), labels={'no_ca': 'CA off'})
    assert seen['titles'] == ['full', 'CA off']  # unlabelled models keep their names


def test_middle_share_interval_and_paired_difference():
    """On a table with known strengths: the share is the band's fraction of the root curve, the interval brackets
    it, and the paired difference of a model with itself is exactly 0 (image variation cancels)."""
    import numpy as np
    import pandas as pd
    from moga_lab.analysis.curves import middle_share_difference, middle_share_interval
    rng = np.random.default_rng(0)
    ratios = [0.0, 0.1, 0.3, 0.5, 0.7, 1.0]
    rows = []
    for image in range(12):
        scale = rng.uniform(0.5, 2.0)  # images differ in overall strength, not in shape
        for model, shape in (('a', [1, 1, 4, 4, 1, 1]), ('b', [1, 1, 1, 1, 1, 1])):
            for r, v in zip(ratios, shape):
                rows.append(dict(model=model, image_id=image, ratio=r, I2=scale * v ** 2, J=scale * v, J_abs=scale * v))
    frame = pd.DataFrame(rows)
    shares = middle_share_interval(frame).set_index('model')
    assert shares.share['a'] == pytest.approx(8 / 12) and shares.share['b'] == pytest.approx(2 / 6)
    assert (shares.ci_low <= shares.share + 1e-12).all() and (shares.share <= shares.ci_high + 1e-12).all()
    d = middle_share_difference(frame, 'a', 'b')
    assert d.difference == pytest.approx(8 / 12 - 2 / 6) and d.ci_low > 0 and d.num_images == 12
    same = middle_share_difference(frame, 'a', 'a')
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0


def test_pixel_mean_baseline_is_the_training_splits_mean_image(two_checkpoints):
    from torch.utils.data import Subset
    from moga_lab.data import create_datamodule
    from moga_lab.loaders import load_classifier, pixel_mean_image
    model = load_classifier(two_checkpoints[0])
    mean = pixel_mean_image(model)
    dm = create_datamodule('synthetic')
    full = dm._load_train()
    full.transform = dm.transforms(train=False)
    train = Subset(full, list(dm._split(len(full))[0]))
    expected = torch.stack([train[i][0] for i in range(len(train))]).double().mean(0).float()
    torch.testing.assert_close(mean, expected, atol=1e-6, rtol=0)
    assert mean.shape == (model.in_chans, model.image_size, model.image_size)


def test_each_baseline_gives_its_own_curve_on_a_trained_model(two_checkpoints, tmp_path, capsys):
    from moga_lab.cli import interaction as tool
    from moga_lab.analysis.game import BASELINES, masking_baseline
    curves = {}
    for baseline in BASELINES:
        out = tmp_path / baseline
        assert tool.main(['--checkpoint', two_checkpoints[0], '--num-images', '2', '--out', str(out),
                          '--baseline', baseline] + SMALL) == 0
        frame = pd.read_csv(out / 'interaction.csv')
        assert (frame.baseline == baseline).all()
        curves[baseline] = frame.sort_values(['image_id', 'ratio']).J_abs.to_numpy()
    assert 'mean-abs' in capsys.readouterr().out  # the shares are printed under every statistic
    names = list(curves)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(curves[a], curves[b]), (a, b)
    # what each baseline paints, on a known image
    image = torch.arange(16.0).view(1, 4, 4)
    assert (masking_baseline('zero', image, 2) == 0).all()
    torch.testing.assert_close(masking_baseline('black', image, 2, mean=(0.5,), std=(0.25,)),
                               torch.full_like(image, -2.0))
    blurred = masking_baseline('blur', image, 2)
    assert blurred.shape == image.shape and blurred.std() < image.std()
    with pytest.raises(ValueError, match="baseline 'grey' is not accepted; accepted: zero, pixel-mean, black, blur"):
        masking_baseline('grey', image, 2)
    with pytest.raises(SystemExit):
        tool.main(['--checkpoint', two_checkpoints[0], '--out', str(tmp_path / 'x'), '--baseline', 'grey'])
    assert "'grey' is not accepted" in capsys.readouterr().err
