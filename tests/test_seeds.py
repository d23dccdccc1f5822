"""moga_lab.analysis.seeds: middle shares per training seed, and differences across seeds, on tables whose shares are
known by construction."""
import math

import numpy as np
import pandas as pd
import pytest

from moga_lab.analysis.seeds import middle_share_by_seed, middle_share_difference_over_seeds

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


def test_middle_share_per_seed_is_the_closed_form():
    table = middle_share_by_seed(seeded_table({'full': [4.0, 9.0], 'row': [1.0, 1.0]}, noise=0.0), statistic='rms')
    assert list(zip(table.model, table.seed)) == [('full', 0), ('full', 1), ('row', 0), ('row', 1)]
    assert table.share.tolist() == pytest.approx([share(4.0), share(9.0), share(1.0), share(1.0)], abs=1e-12)
    assert (table.ci_low <= table.share).all() and (table.share <= table.ci_high).all() and (table.num_images == 16).all()


def test_a_difference_on_every_seed_is_decided_across_seeds_and_a_seed_lottery_is_not():
    # 'steady': full above on every seed by a similar margin; 'lottery': full above on seed 0 only
    frame = seeded_table({'full': [4.0, 4.4, 3.6], 'steady': [2.0, 2.2, 1.8], 'lottery': [2.0, 6.0, 9.0]})
    steady = middle_share_difference_over_seeds(frame, 'full', 'steady', statistic='rms')
    assert sorted(steady.per_seed) == [0, 1, 2] and steady.seeds_a == steady.seeds_b == (0, 1, 2)
    assert all(d.ci_low > 0 for d in steady.per_seed.values())
    expected = np.mean([share(v) for v in (4.0, 4.4, 3.6)]) - np.mean([share(v) for v in (2.0, 2.2, 1.8)])
    assert steady.difference == pytest.approx(expected, abs=2e-3) and steady.interval.low > 0
    assert steady.interval.layout == 'crossed' and steady.interval.num_images == 16
    lottery = middle_share_difference_over_seeds(frame, 'full', 'lottery', statistic='rms')
    assert lottery.per_seed[0].ci_low > 0 and lottery.per_seed[2].ci_high < 0
    assert lottery.interval.low < 0 < lottery.interval.high   # decided on seed 0's checkpoints, not across seeds
    # the same seeds as independent groups: the difference of the means, wider (the seed pairing is not used)
    unpaired = middle_share_difference_over_seeds(frame, 'full', 'steady', statistic='rms', pairing='none')
    assert unpaired.difference == pytest.approx(steady.difference, abs=1e-12)


def test_seed_tables_say_what_is_missing():
    frame = seeded_table({'full': [4.0], 'row': [2.0, 2.0]})
    one = middle_share_difference_over_seeds(frame, 'full', 'row', statistic='rms')
    assert list(one.per_seed) == [0] and one.interval.layout == 'images'    # one common seed: over its images only
    assert 'seed-to-seed variation not covered' in one.interval.sources
    with pytest.raises(ValueError, match='needs a seed column'):
        middle_share_by_seed(frame.drop(columns='seed'))
    with pytest.raises(ValueError, match='no curves of nope'):
        middle_share_difference_over_seeds(frame, 'full', 'nope', statistic='rms')
    with pytest.raises(ValueError, match="pairing 'both' is not accepted; accepted: seed, none"):
        middle_share_difference_over_seeds(frame, 'full', 'row', statistic='rms', pairing='both')
    with pytest.raises(ValueError, match='needs 2 or more seeds per group'):
        middle_share_difference_over_seeds(frame, 'full', 'row', statistic='rms', pairing='none')
    mixed = frame.copy()
    mixed.loc[(mixed.seed == 1) & (mixed.image_id < 8), 'image_id'] += 100     # half the images shared, half not
    with pytest.raises(ValueError, match='share some images and not others'):
        middle_share_difference_over_seeds(mixed, 'full', 'row', statistic='rms')


def test_seed_share_figure_marks_every_seed_once_and_the_mean(tmp_path, monkeypatch):
    from moga_lab.analysis import plots
    shares = middle_share_by_seed(seeded_table({'full': [4.0, 9.0, 1.0], 'row': [1.0, 2.0]}, images=4, noise=0.0),
                                  statistic='rms')
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
