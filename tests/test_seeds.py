"""moga_lab.analysis.seeds: Welch's interval against scipy, and middle shares per training seed on tables whose
shares are known by construction."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from moga_lab.analysis.seeds import (middle_share_by_seed, middle_share_difference_over_seeds, seeds_for_half_width,
                                     welch, welch_half_width)

RATIOS = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)  # three orders in the band 0.2n-0.6n, four outside


def seeded_table(levels, images=16, noise=0.01, seed=0):
    """Per-image rows with I2 = level in the middle orders and 1 elsewhere (times 1 + noise per image and order):
    the debiased middle share of (model, seed) is 3 sqrt(level) / (3 sqrt(level) + 4). ``levels``: model -> one
    level per training seed."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([dict(model=m, seed=s, image_id=i, ratio=r,
                              I2=(level if 0.2 <= r <= 0.6 else 1.0) * (1 + noise * rng.standard_normal()), J=1.0)
                         for m, per_seed in levels.items() for s, level in enumerate(per_seed)
                         for i in range(images) for r in RATIOS])


def share(level):
    return 3 * math.sqrt(level) / (3 * math.sqrt(level) + 4)


def test_welch_matches_scipy():
    a, b = [90.9, 90.86, 90.68], [90.32, 90.33, 90.79, 90.5]
    diff, low, high = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-9)
    assert all(math.isnan(v) for v in welch([1.0], [2.0, 3.0])[1:])   # one value: no spread to estimate
    assert welch([2.0, 2.0], [1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_seeds_needed_for_a_welch_half_width():
    # two groups of n values whose sample s.d. is exactly sd: Welch's interval is then the planning formula's
    for n in (2, 3, 7):
        z = np.arange(n) - (n - 1) / 2
        z = z / z.std(ddof=1)
        diff, low, high = welch(0.30 + 0.025 * z, 0.28 + 0.025 * z)
        assert (high - low) / 2 == pytest.approx(welch_half_width(0.025, n), rel=1e-9)
    # t(0.975, 4) = 2.7764 and t(0.975, 12) = 2.1788 (tables): 3 and 7 seeds at s.d. 0.025
    assert welch_half_width(0.025, 3) == pytest.approx(2.7764 * 0.025 * math.sqrt(2 / 3), rel=1e-4)
    assert welch_half_width(0.025, 7) == pytest.approx(2.1788 * 0.025 * math.sqrt(2 / 7), rel=1e-4)
    # +-0.03 at s.d. 0.025: 6 seeds give 0.0322, 7 give 0.0291
    assert seeds_for_half_width(0.025, 0.03) == 7 and seeds_for_half_width(0.0, 0.01) == 2
    assert seeds_for_half_width(1.0, 1e-6, most=50) == 50
    with pytest.raises(ValueError, match='seeds=1 is not accepted; accepted: an integer >= 2'):
        welch_half_width(0.1, 1)
    with pytest.raises(ValueError, match='half_width=0 is not accepted; accepted: a number > 0'):
        seeds_for_half_width(0.1, 0)


def test_middle_share_per_seed_is_the_closed_form():
    table = middle_share_by_seed(seeded_table({'full': [4.0, 9.0], 'row': [1.0, 1.0]}, noise=0.0))
    assert list(zip(table.model, table.seed)) == [('full', 0), ('full', 1), ('row', 0), ('row', 1)]
    assert table.share.tolist() == pytest.approx([share(4.0), share(9.0), share(1.0), share(1.0)], abs=1e-12)
    assert (table.ci_low <= table.share).all() and (table.share <= table.ci_high).all() and (table.num_images == 16).all()


def test_a_difference_on_every_seed_is_decided_across_seeds_and_a_seed_lottery_is_not():
    # 'steady': full above on every seed by a similar margin; 'lottery': full above on seed 0 only
    frame = seeded_table({'full': [4.0, 4.4, 3.6], 'steady': [2.0, 2.2, 1.8], 'lottery': [2.0, 6.0, 9.0]})
    steady = middle_share_difference_over_seeds(frame, 'full', 'steady')
    assert sorted(steady['per_seed']) == [0, 1, 2] and steady['seeds_a'] == steady['seeds_b'] == [0, 1, 2]
    assert all(d['ci_low'] > 0 for d in steady['per_seed'].values())
    expected = np.mean([share(v) for v in (4.0, 4.4, 3.6)]) - np.mean([share(v) for v in (2.0, 2.2, 1.8)])
    assert steady['difference'] == pytest.approx(expected, abs=2e-3) and steady['ci_low'] > 0
    lottery = middle_share_difference_over_seeds(frame, 'full', 'lottery')
    assert lottery['per_seed'][0]['ci_low'] > 0 and lottery['per_seed'][2]['ci_high'] < 0
    assert lottery['ci_low'] < 0 < lottery['ci_high']   # decided on seed 0's checkpoints, not across seeds


def test_seed_tables_say_what_is_missing():
    frame = seeded_table({'full': [4.0], 'row': [2.0, 2.0]})
    one = middle_share_difference_over_seeds(frame, 'full', 'row')
    assert list(one['per_seed']) == [0] and math.isnan(one['ci_low'])    # one seed of full: no interval over seeds
    with pytest.raises(ValueError, match='needs a seed column'):
        middle_share_by_seed(frame.drop(columns='seed'))
    with pytest.raises(ValueError, match='no curves of nope'):
        middle_share_difference_over_seeds(frame, 'full', 'nope')


def test_seed_share_figure_marks_every_seed_once_and_the_mean(tmp_path, monkeypatch):
    from moga_lab.analysis import plots
    shares = middle_share_by_seed(seeded_table({'full': [4.0, 9.0, 1.0], 'row': [1.0, 2.0]}, images=4, noise=0.0))
    seen = {}

    def keep(fig, path):
        ax = fig.axes[0]
        bars = [seg for c in ax.collections for seg in c.get_segments()
                if seg[0][1] == seg[1][1] and seg[1][0] != seg[0][0]]   # the mean bars (error bars are vertical)
        seen.update(legend=[t.get_text() for t in ax.get_legend().get_texts()],
                    ticks=[t.get_text() for t in ax.get_xticklabels()], means=sorted(float(s[0][1]) for s in bars),
                    widths={round(float(s[0][0])): abs(float(s[1][0] - s[0][0])) for s in bars})
    monkeypatch.setattr(plots, 'save_figure', keep)
    plots.plot_middle_share_by_seed(shares, str(tmp_path / 's.png'))
    assert seen['legend'] == ['seed 0', 'seed 1', 'seed 2', 'mean over seeds']   # once each, not once per marker
    assert seen['ticks'] == ['full', 'row']
    expected = sorted([np.mean([share(4.0), share(9.0), share(1.0)]), np.mean([share(1.0), share(2.0)])])
    assert seen['means'] == pytest.approx(expected, abs=1e-9)
    # each bar spans the seeds it averages: three seed positions 0.25 apart for full, two for row (plus 0.1 a side)
    assert seen['widths'] == pytest.approx({0: 0.7, 1: 0.45})
    monkeypatch.undo()
    plots.plot_middle_share_by_seed(shares, str(tmp_path / 's.png'))       # a real PNG
    assert (tmp_path / 's.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_seed_plan_names_the_spread_and_the_only_model_with_seeds():
    from moga_lab.studies.common import _seed_plan
    shares = pd.DataFrame({'model': ['a', 'a', 'a', 'b', 'b', 'c'], 'seed': [0, 1, 2, 0, 1, 0],
                           'share': [0.30, 0.28, 0.32, 0.20, 0.26, 0.25]})
    sd_a, sd_b = np.std([0.30, 0.28, 0.32], ddof=1), np.std([0.20, 0.26], ddof=1)
    text = _seed_plan(shares, 'model')[1]
    assert f'moves by {sd_a:.3f}-{sd_b:.3f} (s.d.)' in text and f'pooled {math.sqrt((sd_a ** 2 + sd_b ** 2) / 2):.3f}' in text
    assert 'with 2 seeds each' in text            # the fewest seeds among the models that have several
    one = _seed_plan(shares[shares.model != 'b'], 'model')[1]
    assert f'moves by {sd_a:.3f} (s.d., a: the only model with several seeds)' in one and 'with 3 seeds each' in one
    assert _seed_plan(shares[shares.seed == 0], 'model') == []    # no model on several seeds: no plan
