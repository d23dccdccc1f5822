"""The shared-evaluation design: each pair's draws keep the fixed design's law, its estimates are unbiased in repeated
runs with pairs and contexts drawn afresh, its intervals carry the sharing, it is cheaper, and the planner spends
what it is given."""
import numpy as np
import pytest
import torch
from scipy import stats

from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.estimate import InteractionSettings, design_name, interaction_strength, plan_interaction
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import KNOWN_GAMES
from moga_lab.analysis.planner import plan_shared, run_pilot
from moga_lab.analysis.shared import draw_shared_contexts, estimate_shared, expected_cost, grouped_jackknife
from moga_lab.analysis.strength import PairSamples, estimate_strength, pair_summary

N, GRID = 49, 7
ORDERS = order_grid(N, ORDER_RATIOS)


@pytest.mark.parametrize('share', [None, 4])
def test_each_pair_takes_k_draws_uniform_over_its_contexts(share):
    """Every pair gets exactly K contexts per order, none holding its own players, and a player outside the pair
    is in a pair's context with probability m / (n - 2), as in the fixed design."""
    g = torch.Generator().manual_seed(0)
    pairs = sample_pairs(GRID, 30, generator=g)
    m, K = 20, 400
    draws = draw_shared_contexts(N, pairs, [m], K, g, share)
    counts = torch.bincount(draws.pair, minlength=len(pairs))
    assert (counts == K).all()
    ctx = draws.contexts[draws.draw]                                         # [R, n], one row per (pair, draw)
    assert (ctx.sum(1) == m).all()
    own = ctx.gather(1, pairs[draws.pair])
    assert not own.any()
    # each pair's own K contexts: every other player is in them with probability m / (n - 2) (binomial, 5 s.e.)
    p = m / (N - 2)
    se = (p * (1 - p) / K) ** 0.5
    for k in range(len(pairs)):
        freq = ctx[draws.pair == k].double().mean(0)
        others = torch.ones(N, dtype=torch.bool)
        others[pairs[k]] = False
        assert ((freq[others] - p).abs() < 5 * se).all(), (k, (freq[others] - p).abs().max())
    # deterministic orders: the empty context for all, and each pair's own complement
    empty = draw_shared_contexts(N, pairs, [0, N - 2], 1, g)
    assert len(empty.contexts) == 1 + len(pairs) and not empty.contexts[0].any()


def test_grouped_jackknife_is_the_per_pair_one_when_no_draw_is_shared():
    rng = torch.Generator().manual_seed(1)
    O, P, K = 2, 5, 6
    order = torch.arange(O).repeat_interleave(P * K)
    pair = torch.arange(P).repeat_interleave(K).repeat(O)
    dv = torch.randn(O * P * K, generator=rng, dtype=torch.float64) + 0.3
    samples = PairSamples(O, P)
    samples.add(order, pair, dv)
    grouped = grouped_jackknife(samples, torch.arange(len(dv)))
    expected = pair_summary(samples)['var_U'].sum(1) / P ** 2
    torch.testing.assert_close(grouped['I2'], expected)
    torch.testing.assert_close(grouped['I2_diagonal'], expected)
    # two pairs that share every draw with identical dv: perfectly correlated, so the variance doubles over the
    # diagonal (each pair's own) terms
    same = PairSamples(1, 2)
    x = torch.randn(K, generator=rng, dtype=torch.float64)
    same.add(torch.zeros(2 * K, dtype=torch.long), torch.arange(2).repeat_interleave(K), torch.cat([x, x]))
    g2 = grouped_jackknife(same, torch.arange(K).repeat(2))
    torch.testing.assert_close(g2['I2'], 2 * g2['I2_diagonal'])


def test_the_shared_design_is_cheaper_per_dv_and_matches_the_fixed_design_per_pair():
    game = KNOWN_GAMES['local'](GRID, seed=3)
    pairs = sample_pairs(GRID, 40, generator=torch.Generator().manual_seed(2))
    shared = expected_cost(N, pairs, ORDERS, 6, share=40, generator=torch.Generator().manual_seed(0))
    capped = expected_cost(N, pairs, ORDERS, 6, share=8, generator=torch.Generator().manual_seed(0))
    fixed = estimate_strength(game, N, pairs, ORDERS, num_contexts=6, generator=torch.Generator().manual_seed(0))
    assert shared < capped < fixed.forwards and shared < 0.7 * fixed.forwards
    est = estimate_shared(game, N, pairs, ORDERS, 6, share=8, generator=torch.Generator().manual_seed(0))
    assert (est.count[1:-1] == 6).all() and (est.count[[0, -1]] == 1).all()
    assert est.forwards == pytest.approx(capped, rel=0.15)
    for key in ('I2', 'I2_se', 'I2_df', 'J_abs', 'J_abs_bias_bound', 'J_debiased_low'):
        assert torch.isfinite(est.stats[key][1:-1]).all(), key


@pytest.mark.slow  # repeated runs on known games
@pytest.mark.parametrize('game', ['local', 'skewed'])
def test_the_shared_design_is_unbiased_with_pairs_and_contexts_drawn_afresh(game):
    """200 runs, pairs and contexts redrawn in each (40 pairs, 8 contexts, the default groups of 16 pairs sharing; one
    group of all 40 leaves the lowest orders about 8 distinct draws and covered 0.885-0.91 there): I2 per order is
    unbiased for the mean over the run's pairs of I² (within 3.5 SE, no systematic sign) and Î per pair is unbiased.
    The intervals (each pair's unbiased variance plus the covariances of shared draws, t on the draws' degrees of
    freedom) cover the run's truth within 2 SE of 92-98 % per order where dv vary smoothly (local); where dv are rare
    spikes (skewed) they fall short at the orders whose spikes 8 draws often miss, as the fixed design's do
    (docs/interaction.md): the floor asserted there is what was measured, not a target met."""
    known = KNOWN_GAMES[game](GRID, seed=3)
    errors, mean_errors, covered = [], [], []
    for r in range(200):
        g = torch.Generator().manual_seed(r)
        pairs = sample_pairs(GRID, 40, generator=g)
        est = estimate_shared(known, N, pairs, ORDERS, 8, generator=g)
        truth_i = known.interaction(pairs, ORDERS)
        mean_errors.append(((est.mean - truth_i)[1:-1]).mean().item())
        truth = truth_i.pow(2).mean(1)
        errors.append((est.stats['I2'] - truth).numpy())
        q = torch.as_tensor(stats.t.ppf(0.975, est.stats['I2_df'].clamp(min=1).numpy()))
        half = q * est.stats['I2_se']
        covered.append(((est.stats['I2'] - half <= truth + 1e-12) & (truth - 1e-12 <= est.stats['I2'] + half)).numpy())
    errors = np.array(errors)[:, 1:-1]
    z = errors.mean(0) / (errors.std(0, ddof=1) / np.sqrt(len(errors)))
    assert (np.abs(z) < 3.5).all() and abs(z.mean()) < 1.5, z
    assert abs(np.mean(mean_errors)) < 3 * np.std(mean_errors) / np.sqrt(len(mean_errors))
    rate = np.array(covered).mean(0)[1:-1]
    slack = 2 * (0.95 * 0.05 / len(covered)) ** 0.5
    if game == 'local':
        assert ((rate >= 0.92 - slack) & (rate <= 0.98 + slack)).all() and 0.92 <= rate.mean() <= 0.97, rate
    else:
        assert (rate >= 0.75).all() and rate.mean() >= 0.82, rate


def test_the_planner_spends_its_budget_and_a_tighter_budget_plans_fewer_passes():
    game = KNOWN_GAMES['skewed'](GRID, seed=3)
    g = torch.Generator().manual_seed(3)
    comp = run_pilot([game], N, [sample_pairs(GRID, 40, generator=g)], ORDERS, ratios=ORDER_RATIOS, generator=g)
    big = plan_shared(comp, N, GRID, budget=8000, ratios=ORDER_RATIOS)
    small = plan_shared(comp, N, GRID, budget=3000, ratios=ORDER_RATIOS)
    assert big.forwards <= 8000 and small.forwards <= 3000 and small.forwards < big.forwards
    assert big.share_se < small.share_se and min(big.contexts[1:-1]) >= 4
    pairs = sample_pairs(GRID, big.num_pairs, generator=torch.Generator().manual_seed(9))
    est = estimate_shared(game, N, pairs, ORDERS, list(big.contexts), share=big.share,
                          generator=torch.Generator().manual_seed(9))
    assert est.forwards == pytest.approx(big.forwards, rel=0.25)
    assert 'pairs per image' in big.describe() and 'set aside' in big.describe()
    with pytest.raises(ValueError, match='give one of budget'):
        plan_shared(comp, N, GRID, ratios=ORDER_RATIOS)
    with pytest.raises(ValueError, match='no plan reaches the request'):
        plan_shared(comp, N, GRID, budget=50, ratios=ORDER_RATIOS)


def test_the_image_game_runs_the_shared_design_and_names_it():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images, labels = torch.randn(3, 1, 12, 12), torch.tensor([0, 1, 2])
    settings = InteractionSettings(grid=4, num_pairs=6, num_contexts=4, design='shared', share=4, ratios=(0.0, 0.5, 1.0))
    table = interaction_strength(model, images[:1], labels[:1], settings)
    assert set(table.design) == {'shared'} and table.share.iloc[0] == 4 and 'I2_df' in table.columns
    plan, planned = plan_interaction([model], images, labels, InteractionSettings(grid=4, ratios=(0.0, 0.5, 1.0)),
                                     budget=400, pilot_images=1)
    assert planned.design == 'shared' and planned.num_pairs == plan.num_pairs and planned.contexts_per_order == plan.contexts
    for bad, message in ((dict(design='nested'), "design 'nested' is not accepted; accepted: fixed, shared, two-phase"),
                         (dict(design='shared', target_ci=0.1), "target_ci is the two-phase design's"),
                         (dict(design='two-phase'), 'the two-phase design needs target_ci'),
                         (dict(design='shared', contexts_per_order=(4, 4)), 'contexts_per_order has 2 entries'),
                         (dict(design='shared', share=0), 'share=0 is not accepted')):
        with pytest.raises(ValueError, match=message):
            design_name(InteractionSettings(ratios=(0.0, 0.5, 1.0), **bad))
