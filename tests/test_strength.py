"""The strength statistics against games with a known answer: the closed form itself, the naive statistic's bias,
the debiased statistic's unbiasedness and interval coverage, and the precision-targeted sampler."""
import pandas as pd
import pytest
import torch

from moga_lab.analysis.games import (ORDER_RATIOS, InteractionSettings, evaluation_model, interaction_strength,
                                     sample_pairs, strength_curve)
from moga_lab.analysis.interaction import exact_multi_order_interaction, multi_order_interaction, order_grid
from moga_lab.analysis.known_games import ThresholdGame, random_local_game
from moga_lab.analysis.strength import CachedValues, estimate_strength


@pytest.mark.parametrize('grid,seed', [(3, 1), (3, 2)])
def test_threshold_game_closed_form_equals_enumeration(grid, seed):
    game = random_local_game(grid, seed=seed)
    n = grid * grid
    pairs = torch.tensor([[0, 1], [4, 5], [3, 7], [0, 8], [2, 4]])
    orders = list(range(n - 1))
    exact = exact_multi_order_interaction(game, n, pairs, orders)
    torch.testing.assert_close(game.interaction(pairs, orders), exact, atol=1e-12, rtol=0)
    assert exact.abs().max() > 0.1  # the game really interacts


def test_threshold_game_rejects_bad_terms():
    with pytest.raises(ValueError, match='threshold 4 for a set of 3 players'):
        ThresholdGame(9, [[0, 1, 2]], [4], [1.0])


def test_fixed_mode_equals_multi_order_interaction():
    game = random_local_game(7, seed=3)
    pairs = sample_pairs(7, 10, generator=torch.Generator().manual_seed(0))
    orders = order_grid(49, ORDER_RATIOS)
    mean, se = multi_order_interaction(game, 49, pairs, orders, 6, generator=torch.Generator().manual_seed(5))
    est = estimate_strength(game, 49, pairs, orders, num_contexts=6, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(est.mean, mean)
    torch.testing.assert_close(est.stats['J'], mean.abs().mean(1))
    torch.testing.assert_close(est.stats['noise_floor'], (2 / torch.pi) ** 0.5 * se.nan_to_num(0).mean(1))
    # the deterministic orders (m = 0, n - 2) carry no noise at all
    assert est.stats['noise_floor'][0] == 0 and est.stats['noise_floor'][-1] == 0
    assert est.stats['I2_se'][0] == 0


def _replicates(grid, K, reps, pairs_seed=0):
    n = grid * grid
    game = random_local_game(grid, seed=grid)
    orders = order_grid(n, ORDER_RATIOS)
    pairs = sample_pairs(grid, 50, generator=torch.Generator().manual_seed(pairs_seed))
    truth = game.interaction(pairs, orders)
    runs = [estimate_strength(game, n, pairs, orders, num_contexts=K,
                              generator=torch.Generator().manual_seed(1000 + r)).stats for r in range(reps)]
    stack = {k: torch.stack([r[k] for r in runs]) for k in runs[0]}
    return truth, stack


@pytest.mark.parametrize('grid', [7, 14])  # n = 49 and n = 196 players
def test_debiased_strength_is_unbiased_and_naive_is_not_at_8_contexts(grid):
    reps = 24
    truth, s = _replicates(grid, K=8, reps=reps)
    true_abs, true_ms = truth.abs().mean(1), truth.pow(2).mean(1)
    middle = slice(3, 10)  # orders 0.2n .. 0.8n
    sem = lambda x: x.std(0) / reps ** 0.5  # noqa: E731
    # naive: measurably biased upward in the middle orders (measured: +30 % at n = 49, +80 % at n = 196)
    bias = s['J'].mean(0) - true_abs
    assert (bias[middle] > 2 * sem(s['J'])[middle]).all()
    assert bias[middle].sum() > 8 * sem(s['J'])[middle].pow(2).sum().sqrt()
    assert bias[middle].sum() / true_abs[middle].sum() > 0.15
    # ... and its bias is bounded by the noise floor it reports (up to Monte-Carlo error)
    assert (bias <= s['noise_floor'].mean(0) + 4 * sem(s['J']) + 1e-12).all()
    # debiased: I2 unbiased for the mean square of the true I. I2 is skewed (rare large dv), so the replicate SE
    # is itself noisy: every order within 4.5 SE, and no systematic sign (mean z near 0)
    z = (s['I2'].mean(0) - true_ms) / sem(s['I2']).clamp(min=1e-12)
    assert (z.abs() < 4.5).all(), z
    assert abs(z[1:-1].mean()) < 1.5, z
    # the stated 95 % interval covers the truth (root-mean-square of I) in most (replicate, order) cells
    eps = 1e-9  # m = 0 and n - 2 are exact: an interval of width 0
    covered = (s['J_debiased_low'] - eps <= true_ms.sqrt()) & (true_ms.sqrt() <= s['J_debiased_high'] + eps)
    assert covered.double().mean() > 0.9
    # a single run at K = 8 matches the truth within its interval at nearly every order
    assert covered[0].sum() >= len(true_ms) - 1


def test_precision_mode_reaches_its_target_and_spends_where_the_noise_is():
    grid, n = 7, 49
    game = random_local_game(grid, seed=7)
    orders = order_grid(n, ORDER_RATIOS)
    pairs = sample_pairs(grid, 20, generator=torch.Generator().manual_seed(1))
    truth = game.interaction(pairs, orders).pow(2).mean(1).sqrt()
    est = estimate_strength(game, n, pairs, orders, target_ci=0.1, max_forwards=300_000,
                            generator=torch.Generator().manual_seed(2))
    assert est.converged.all() and est.rounds > 1
    st = est.stats
    half = (st['J_debiased_high'] - st['J_debiased_low']) / 2
    floor = 0.1 * st['J_debiased'].mean()
    # the target: half-width <= 10 % of the value (orders below the floor: about the floor's precision)
    strong = st['J_debiased'] >= floor
    assert (half[strong] <= 0.1 * st['J_debiased'][strong] * 1.05).all()
    covered = (st['J_debiased_low'] - 1e-9 <= truth) & (truth <= st['J_debiased_high'] + 1e-9)
    assert covered.sum() >= len(orders) - 1
    # the deterministic orders got one context; the others between the pilot's 8 and many more: the allocation
    # follows each order's noise relative to its strength (the noisiest relative to its value gets the most)
    assert st['contexts'][0] == 1 and st['contexts'][-1] == 1
    inner = slice(1, -1)
    assert st['contexts'][inner].min() >= 8 and st['contexts'][inner].max() > 4 * st['contexts'][inner].min()
    pilot = estimate_strength(game, n, pairs, orders, num_contexts=8, generator=torch.Generator().manual_seed(2))
    relative_noise = pilot.stats['noise_floor'] / pilot.stats['J_debiased'].clamp(min=floor)
    assert st['contexts'][inner].argmax() == relative_noise[inner].argmax()


def test_precision_mode_respects_the_forward_cap():
    game = random_local_game(7, seed=7)
    orders = order_grid(49, ORDER_RATIOS)
    pairs = sample_pairs(7, 20, generator=torch.Generator().manual_seed(1))
    est = estimate_strength(game, 49, pairs, orders, target_ci=0.001, max_forwards=6000,
                            generator=torch.Generator().manual_seed(2))
    assert est.forwards <= 6000 and not est.converged.all()
    with pytest.raises(ValueError, match='target_ci=0 must be > 0'):
        estimate_strength(game, 49, pairs, orders, target_ci=0)
    with pytest.raises(ValueError, match='initial_contexts=1'):
        estimate_strength(game, 49, pairs, orders, target_ci=0.1, initial_contexts=1)


def test_cached_values_evaluate_each_coalition_once():
    calls = []

    def game(masks):
        calls.append(len(masks))
        return masks.double().sum(1)
    values = CachedValues(game, batch_size=3)
    masks = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    torch.testing.assert_close(values(masks), torch.tensor([2., 2., 0., 3., 1.], dtype=torch.float64))
    assert values.forwards == 4 and sum(calls) == 4
    torch.testing.assert_close(values(masks[[3, 0]]), torch.tensor([3., 2.], dtype=torch.float64))
    assert sum(calls) == 4  # nothing new to evaluate


def test_image_table_columns_precision_mode_and_fused_evaluation():
    from moga_lab.models import MogaNet
    torch.manual_seed(0)
    model = MogaNet('xtiny', num_classes=10, in_chans=1, stem_stride=2).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so the fold is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    images, labels = torch.randn(1, 1, 28, 28), torch.tensor([3])
    settings = InteractionSettings(grid=7, num_pairs=3, num_contexts=4, ratios=(0.0, 0.5, 1.0), batch_size=128)
    fused = interaction_strength(model, images, labels, settings)
    plain = interaction_strength(model, images, labels, InteractionSettings(**{**settings.__dict__, 'fuse': False}))
    for column in ('J', 'I2', 'J_debiased'):  # the fused copy gives the same game (values to 1e-4)
        torch.testing.assert_close(torch.tensor(fused[column].values), torch.tensor(plain[column].values),
                                   atol=1e-4, rtol=1e-4)
    runner = evaluation_model(model, settings)  # built once, reused as is for many images
    assert runner is not model and evaluation_model(runner, settings) is runner
    again = interaction_strength(runner, images, labels, settings)
    assert again.J_debiased.tolist() == fused.J_debiased.tolist()
    for column in ('J_debiased', 'J_debiased_se', 'noise_floor', 'I2', 'I2_se', 'forwards', 'converged'):
        assert column in fused.columns
    assert (fused.J_debiased_low <= fused.J_debiased + 1e-12).all()
    assert (fused.J_debiased <= fused.J_debiased_high + 1e-12).all()
    target = InteractionSettings(**{**settings.__dict__, 'target_ci': 0.5, 'max_forwards': 2000})
    adaptive = interaction_strength(model, images, labels, target)
    assert (adaptive.forwards <= 2000).all() and (adaptive.target_ci == 0.5).all()


def test_strength_curve_statistics():
    frame = pd.DataFrame(dict(model='m', image_id=[0, 0, 1, 1], order=[0, 5, 0, 5], ratio=[0.0, 1.0, 0.0, 1.0],
                              J=[1.0, 3.0, 1.0, 1.0], noise_floor=[0.0, 0.5, 0.0, 0.5], I2=[1.0, 4.0, 1.0, 0.0]))
    naive = strength_curve(frame, statistic='naive', num_bootstrap=20)
    assert naive.J.tolist() == [1.0, 2.0] and naive.J_norm.tolist() == pytest.approx([2 / 3, 4 / 3])
    assert naive.noise_floor_norm.tolist() == pytest.approx([0.0, 0.5 / 1.5])
    debiased = strength_curve(frame, num_bootstrap=20)  # the default: root of the mean I2 over images
    assert debiased.statistic.iloc[0] == 'debiased'
    assert debiased.J.tolist() == pytest.approx([1.0, 2 ** 0.5])
    with pytest.raises(ValueError, match="statistic='median' is not supported; accepted: debiased, naive"):
        strength_curve(frame, statistic='median')
    with pytest.raises(ValueError, match="no 'I2' column"):
        strength_curve(frame.drop(columns='I2'))


@pytest.mark.filterwarnings('ignore:bf16=True on a CPU without native bfloat16')   # expected on AVX2-only CPUs
def test_bf16_game_keeps_the_head_in_fp32():
    from moga_lab.analysis.games import ImageGame
    seen = {}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.fc = torch.nn.Linear(4, 3)

        def forward_features(self, x):
            seen['trunk_autocast'] = torch.is_autocast_enabled('cpu')
            return self.conv(x)

        def forward_head(self, x):
            seen['head_dtype'], seen['head_autocast'] = x.dtype, torch.is_autocast_enabled('cpu')
            return self.fc(x.mean((2, 3)))

        def forward(self, x):
            return self.forward_head(self.forward_features(x))

    game = ImageGame(Net().eval(), torch.randn(1, 8, 8), 1, grid=2, bf16=True)
    values = game(torch.tensor([[True, False, True, True]]))
    assert seen == dict(trunk_autocast=True, head_dtype=torch.float32, head_autocast=False)
    assert values.dtype == torch.float32 and values.shape == (1,)


@pytest.mark.parametrize('native', [True, False])
def test_bf16_game_on_a_cpu_without_native_bf16_warns(monkeypatch, native):
    import warnings
    from moga_lab.analysis.games import ImageGame
    from moga_lab.models import fuse
    monkeypatch.setitem(fuse._BF16, 'ok', native)   # as on a CPU with / without AVX-512 BW/VL/DQ
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        ImageGame(net, torch.randn(1, 8, 8), 1, grid=2, bf16=True)
        ImageGame(net, torch.randn(1, 8, 8), 1, grid=2, bf16=False)
    messages = [str(w.message) for w in seen if 'bfloat16' in str(w.message)]
    assert len(messages) == (0 if native else 1)
    assert native or 'bf16=True on a CPU without native bfloat16' in messages[0] and 'use bf16=False' in messages[0]
