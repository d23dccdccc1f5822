"""Declared claims adjusted as a family: Holm, Benjamini-Hochberg, the tests, the difference of differences."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from moga_lab.studies.claims import benjamini_hochberg, evaluate_registry, holm, load_registry
from moga_lab.analysis.coalitions import ORDER_RATIOS

ROOT = Path(__file__).resolve().parents[1]


def test_holm_and_bh_against_their_definitions():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 -> 4 x, 3 x, 2 x, 1 x, running maximum
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p_k m / k, running minimum from the top
    assert benjamini_hochberg(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])


def _table(model, shares_per_image, image_ids, statistic_scale=1.0):
    """A per-image interaction table whose middle band (0.2-0.6) holds ``share`` of each image's curve."""
    ratios = np.asarray(ORDER_RATIOS)
    band = (ratios >= 0.2) & (ratios <= 0.6)
    rows = []
    for image_id, share in zip(image_ids, shares_per_image):
        curve = np.where(band, share / band.sum(), (1 - share) / (~band).sum())
        for k, r in enumerate(ratios):
            rows.append(dict(model=model, image_id=image_id, order=k, ratio=r, J_abs=curve[k] * statistic_scale,
                             I2=(curve[k] * statistic_scale) ** 2, J=curve[k], noise_floor=0.001, n_players=49,
                             num_pairs=20, num_contexts=24, target_ci=float('nan'), design='fixed'))
    return pd.DataFrame(rows)


def _study(folder, effects, seed=0, n=40, accuracy=None):
    rng = np.random.default_rng(seed)
    ids = list(range(n))
    base = rng.uniform(0.3, 0.5, n)
    frames = [_table('base', base, ids)]
    for name, effect in effects.items():
        frames.append(_table(name, np.clip(base + effect + rng.normal(0, 0.03, n), 0.01, 0.99), ids))
    folder.mkdir(parents=True)
    pd.concat(frames).to_csv(folder / 'interaction.csv', index=False)
    rows = accuracy or ([dict(model='base', seed=0, test_top1=90.0)]
                        + [dict(model=m, seed=0, test_top1=90.5) for m in effects])
    pd.DataFrame(rows).to_csv(folder / 'accuracy.csv', index=False)


RULE = dict(pairing='seed', alternative='two-sided')
"""The rule every test claim declares unless it says otherwise."""


def _registry(path, claims, correction='holm'):
    claims = [{**({} if c.get('test') in ('change', 'median') else RULE), **({'statistic': 'mean-abs'} if c.get('test')
              in ('middle_share', 'middle_share_seeds') else {}), **c} for c in claims]
    path.write_text(yaml.safe_dump(dict(family='test', correction=correction, claims=claims)))
    return str(path)


def test_holm_changes_a_verdict_that_a_bare_interval_would_call(tmp_path):
    """Five claims: one strong effect, one marginal (p between 0.01 and 0.05), three nulls. Alone the marginal one
    is 'decided'; adjusted over the family of five it is not. Built so that the test can fail both ways."""
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 'study', dict(strong=0.05, marginal=0.011, null1=0.0, null2=0.0, null3=0.0), n=40)
    claims = [dict(id=name, test='middle_share', study='study', a=name, b='base', statistic='mean-abs',
                   direction='greater', what=f'{name} above base') for name in
              ('strong', 'marginal', 'null1', 'null2', 'null3')]
    table = evaluate_registry(_registry(tmp_path / 'claims.yaml', claims))
    primary = table[table.primary].set_index('claim_id')
    assert primary.loc['strong', 'verdict'] == 'decided, as declared (Holm over 5 claims)'
    assert primary.loc['marginal', 'p'] < 0.05 < primary.loc['marginal', 'p_adjusted']
    assert primary.loc['marginal', 'verdict'] == 'not decided (Holm over 5 claims)'
    assert (primary.p_adjusted >= primary.p).all()
    # every interaction claim is reported under the other statistic too, as a sensitivity row
    assert set(table[~table.primary].statistic) == {'rms'} and len(table) == 10
    for column in ('claim_id', 'estimate', 'low', 'high', 'p', 'p_adjusted', 'verdict', 'statistic', 'design'):
        assert column in table.columns
    assert (table.design == 'fixed').all()


def test_a_claim_not_computed_yet_stays_in_its_family_at_p_1(tmp_path):
    """A study published before its sibling: the missing claims count in the family with p = 1, so the verdicts
    read now say "over 3 claims" truly and can only strengthen once the missing ones are computed."""
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 'done', dict(strong=0.05, marginal=0.012), n=40)
    claims = [dict(id=name, test='middle_share', study='done', a=name, b='base', what=f'{name} above base')
              for name in ('strong', 'marginal')]
    claims.append(dict(id='later', test='middle_share', study='not_yet', a='x', b='base', what='x above base'))
    t = evaluate_registry(_registry(tmp_path / 'c.yaml', claims))
    t = t[t.primary].set_index('claim_id')
    assert t.loc['later', 'verdict'] == 'not computed' and np.isnan(t.loc['later', 'p_adjusted'])
    assert t.loc['later', 'note'].startswith('not computed: not_yet/interaction.csv is missing')  # no machine path
    expected = holm([t.loc['strong', 'p'], t.loc['marginal', 'p'], 1.0])[:2]
    assert t.loc[['strong', 'marginal'], 'p_adjusted'].tolist() == pytest.approx(expected)
    assert t.loc['marginal', 'p_adjusted'] == pytest.approx(min(1.0, 2 * t.loc['marginal', 'p']))  # not 1 x p
    assert t.loc['strong', 'verdict'].endswith('(Holm over 3 claims; 1 not computed yet, at p = 1)')


def test_a_change_between_settings_is_tested_on_the_difference_of_the_effects(tmp_path):
    """Two settings with the same effect: each decided alone, yet the change between them is not; then a setting
    where the effect is gone: the change is decided (both verdicts come from the difference of differences)."""
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 's28', dict(moga=0.04), seed=1)
    _study(tmp_path / 's56', dict(moga=0.04), seed=2)
    _study(tmp_path / 's56_gone', dict(moga=0.0), seed=3)
    claims = [dict(id='gap', test='middle_share', study='s28', a='moga', b='base', what='gap at 28 px'),
              dict(id='gap_changes', test='change', of='gap', other_study='s56', patch_px='same'),
              dict(id='gap_vanishes', test='change', of='gap', other_study='s56_gone', patch_px='differs')]
    table = evaluate_registry(_registry(tmp_path / 'c.yaml', claims))
    t = table[table.primary].set_index('claim_id')
    assert t.loc['gap', 'verdict'].startswith('decided, as declared')
    assert t.loc['gap_changes', 'verdict'].startswith('not decided') and abs(t.loc['gap_changes', 'estimate']) < 0.02
    assert t.loc['gap_vanishes', 'verdict'].startswith('decided') and t.loc['gap_vanishes', 'estimate'] > 0.02
    assert 'patch size in pixels differs' in t.loc['gap_vanishes', 'note']
    assert 'is the same' in t.loc['gap_changes', 'note']


def test_accuracy_across_seeds_states_its_degrees_of_freedom(tmp_path):
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    acc = [dict(model='moga', seed=s, test_top1=v) for s, v in enumerate((90.9, 90.8, 90.7))]
    acc += [dict(model='base', seed=s, test_top1=v) for s, v in enumerate((85.2, 85.6, 85.4))]
    _study(tmp_path / 's', dict(moga=0.0), accuracy=acc)
    claims = [dict(id='acc', test='top1', study='s', a='moga', b='base', pairing='none')]
    row = evaluate_registry(_registry(tmp_path / 'a.yaml', claims)).iloc[0]
    assert row.estimate == pytest.approx(5.4) and row.low < 5.4 < row.high
    assert 't (seeds; seeds independent) over 3 / 3 seeds, plus the test set' in row.note and f'(df {row.df:.1f})' in row.note
    # the seeds' Welch term and the test set's binomial one (10,000 images), both in the interval
    welch = np.var([90.9, 90.8, 90.7], ddof=1) / 3 + np.var([85.2, 85.6, 85.4], ddof=1) / 3
    binomial = (0.908 * 0.092 + 0.854 * 0.146) / 10_000 * 100 ** 2
    assert row.se == pytest.approx(np.sqrt(welch + binomial), rel=1e-9) and row.df > 2
    assert row.statistic == '' and row.verdict == 'decided, as declared (Holm over 1 claims)'
    assert (row.pairing, row.alternative) == ('none', 'two-sided')


VALID = dict(id='x', test='middle_share', statistic='mean-abs', pairing='seed', alternative='two-sided')


@pytest.mark.parametrize('change,message', [
    (dict(test='median'), "test 'median' is not accepted; accepted: middle_share"),
    (dict(test='top1', statistic=None, direction='up'), "direction 'up' is not accepted; accepted: greater, less"),
    (dict(statistic='max'), "statistic 'max' is not accepted; accepted: mean-abs, rms"),
    (dict(statistic='naive'), "statistic 'naive' is not accepted; accepted: mean-abs, rms"),
    (dict(statistic=None), "statistic missing; accepted: mean-abs, rms"),
    (dict(pairing='images'), "pairing 'images' is not accepted; accepted: seed, none"),
    (dict(pairing=None), "pairing missing; accepted: seed, none"),
    (dict(alternative='larger'), "alternative 'larger' is not accepted; accepted: two-sided, greater, less"),
    (dict(alternative='less'), "alternative 'less' disagrees with direction 'greater'"),
    (dict(test='top1'), "statistic 'mean-abs' is given for a top1 test; accepted: a statistic only for"),
    (dict(test='gradcam', statistic=None), "zero_maps missing; accepted: drop, uniform, zero"),
    (dict(test='change', of='nothing', patch_px='same'), "changes claim 'nothing', which is not declared"),
    (dict(exploratory=True, sensitivity=True), 'is both exploratory and sensitivity'),
])
def test_registry_errors_name_the_bad_value(tmp_path, change, message):
    entry = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    path = tmp_path / 'r.yaml'
    path.write_text(yaml.safe_dump(dict(family='test', claims=[entry])))
    with pytest.raises(ValueError, match=message):
        load_registry(str(path))


def test_the_family_is_the_claims_declared_statistic_not_a_fixed_one(tmp_path):
    """A claim that declares the RMS as primary is adjusted with the family under the RMS; its mean-|I| row is a
    sensitivity row (no p, no verdict). Choosing the family by the statistic's name would adjust the wrong row."""
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 'study', dict(strong=0.05, other=0.05), n=40)
    claims = [dict(id='by_rms', test='middle_share', study='study', a='strong', b='base', statistic='rms'),
              dict(id='by_abs', test='middle_share', study='study', a='other', b='base', statistic='mean-abs'),
              dict(id='explore', test='middle_share', study='study', a='other', b='base', exploratory=True),
              dict(id='sensitive', test='middle_share', study='study', a='other', b='base', sensitivity=True)]
    t = evaluate_registry(_registry(tmp_path / 'c.yaml', claims)).set_index(['claim_id', 'statistic'])
    assert t.loc[('by_rms', 'rms'), 'role'] == 'claim' and t.loc[('by_rms', 'mean-abs'), 'role'] == 'sensitivity'
    assert t.loc[('by_rms', 'rms'), 'verdict'] == 'decided, as declared (Holm over 2 claims)'
    assert t.loc[('by_rms', 'rms'), 'p_adjusted'] == pytest.approx(holm([t.loc[('by_rms', 'rms'), 'p'],
                                                                        t.loc[('by_abs', 'mean-abs'), 'p']])[0])
    for key in (('by_rms', 'mean-abs'), ('by_abs', 'rms'), ('sensitive', 'mean-abs'), ('sensitive', 'rms')):
        assert t.loc[key, 'verdict'] == 'sensitivity (estimate and interval only, no verdict)'
        assert np.isnan(t.loc[key, 'p']) and np.isnan(t.loc[key, 'p_adjusted']) and np.isnan(t.loc[key, 'family_low'])
        assert t.loc[key, 'low'] < t.loc[key, 'estimate'] < t.loc[key, 'high']
    assert t.loc[('explore', 'mean-abs'), 'verdict'].startswith('exploratory (unadjusted p = ')
    assert t.loc[('explore', 'mean-abs'), 'verdict'].endswith(', no verdict)')
    # simultaneous intervals: Bonferroni over the family's 2 claims, wider than the 95 % ones
    row = t.loc[('by_abs', 'mean-abs')]
    se, df = row.se, row.df
    half = stats.t.ppf(1 - 0.05 / 2 / 2, df) * se
    assert (row.family_low, row.family_high) == pytest.approx((row.estimate - half, row.estimate + half), rel=1e-9)
    assert row.family_low < row.low and row.decidable_effect > 0
    assert (row.pairing, row.alternative) == ('seed', 'two-sided') and 'images' in row.sources


def test_a_table_without_the_columns_a_test_needs_is_refused(tmp_path):
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 'study', dict(moga=0.05), n=10)
    table = pd.read_csv(tmp_path / 'study' / 'interaction.csv').drop(columns=['J_abs'])
    table.to_csv(tmp_path / 'study' / 'interaction.csv', index=False)
    claims = [dict(id='gap', test='middle_share', study='study', a='moga', b='base')]
    with pytest.raises(ValueError, match=r'^study/interaction.csv has no J_abs column\(s\); accepted: a table with '
                                         r'model, image_id, ratio, J_abs, noise_floor$'):
        evaluate_registry(_registry(tmp_path / 'c.yaml', claims))


def test_grad_cam_claims_count_zero_maps_as_declared_and_use_every_seed(tmp_path):
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    study = tmp_path / 'study'
    study.mkdir()
    rng = np.random.default_rng(0)
    rows = [dict(model=m, seed=s, image_id=i, cam_on_garment=0.5 + (0.05 if m == 'moga' else 0) + 0.05 * rng.normal(),
                 garment_area=0.4) for m in ('moga', 'base') for s in range(3) for i in range(30)]
    rows[0]['cam_on_garment'] = float('nan')                   # moga's seed-0 map of image 0 is all zero
    pd.DataFrame(rows).to_csv(study / 'gradcam.csv', index=False)
    claims = [dict(id=f'cam_{rule}', test='gradcam', study='study', a='moga', b='base', zero_maps=rule)
              for rule in ('drop', 'uniform', 'zero')]
    t = evaluate_registry(_registry(tmp_path / 'c.yaml', claims)).set_index('claim_id')
    assert '1 image(s) with an all-zero map dropped' in t.loc['cam_drop', 'note'] and '3 seed(s) x 29 images' in \
        t.loc['cam_drop', 'note']
    assert '3 seed(s) x 30 images' in t.loc['cam_uniform', 'note'] and 'counted as evenly spread' in \
        t.loc['cam_uniform', 'note']
    assert t.loc['cam_zero', 'estimate'] < t.loc['cam_uniform', 'estimate']   # a zero map: no mass on the object
    assert 'seeds and images crossed' in t.loc['cam_drop', 'note']


def test_the_sweep_chooses_on_validation_and_never_reads_the_test_split(tmp_path, monkeypatch, capsys):
    from moga_lab.cli import sweep as sweep_cli
    from moga_lab.data.synthetic import SyntheticDataModule

    def no_test(self):
        raise AssertionError('the sweep read the test split')
    monkeypatch.setattr(SyntheticDataModule, '_load_test', no_test)
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    args = ['--variant', 'xtiny', '--data', 'synthetic', '--batch-size', '16', '--no-progress', '--epochs', '1',
            '--limit-train-batches', '2', '--lrs', '1e-3', '3e-2', '--out', str(tmp_path / 'sweep')]
    assert sweep_cli.main(args) == 0
    table = pd.read_csv(tmp_path / 'sweep' / 'sweep.csv')
    assert table.lr.tolist() == [1e-3, 3e-2] and table.chosen.sum() == 1
    assert not [c for c in table.columns if 'test' in c]
    best = table.sort_values(['val_top1', 'lr'], ascending=[False, True]).iloc[0]
    assert bool(table.set_index('lr').loc[best.lr, 'chosen'])
    assert 'chosen on the validation split' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sweep_cli.main(args[:-4] + ['--lrs', '-1', '--out', str(tmp_path / 'bad')])


def test_the_repositorys_registry_declares_a_small_family():
    import os
    registry = load_registry(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments', 'claims',
                                          'paper.yaml'))
    family = [c for c in registry['claims'] if c.role == 'claim']
    assert registry['correction'] == 'holm' and len(family) == 10
    assert all(c.what and c.why for c in registry['claims'])
    assert {c.statistic for c in family if c.test.startswith('middle')} == {'mean-abs'}


def test_the_readme_findings_table_is_the_generated_one():
    """The README's findings come from the registry and the studies' files, never typed by hand."""
    from moga_lab.studies.findings import FINDINGS_END, FINDINGS_START, findings_markdown
    table = evaluate_registry(str(ROOT / 'experiments' / 'claims' / 'paper.yaml'))
    for page, link in (('README.md', 'docs/paper.md'), ('docs/paper.md', 'paper.md')):
        text = (ROOT / page).read_text()
        block = text.split(FINDINGS_START, 1)[1].split(FINDINGS_END, 1)[0]
        assert block.strip() == findings_markdown(table, link).strip(), \
            f'{page} findings differ: run moga-claims --registry experiments/claims/paper.yaml --readme {page}'


def test_the_findings_summary_counts_the_familys_verdicts():
    """The sentence under the findings table: the family's claims, grouped by verdict; sensitivity rows and
    exploratory claims are not counted."""
    from moga_lab.studies.findings import findings_summary
    scope = 'Holm over 3 claims'
    rows = [dict(claim_id='a', role='claim', verdict=f'decided, as declared ({scope})'),
            dict(claim_id='a', role='sensitivity', verdict='sensitivity (estimate and interval only, no verdict)'),
            dict(claim_id='b', role='claim', verdict=f'not decided ({scope})'),
            dict(claim_id='c', role='claim', verdict=f'decided, against the declared direction ({scope})'),
            dict(claim_id='x', role='exploratory', verdict='exploratory (unadjusted p = 0.01, no verdict)')]
    table = pd.DataFrame(rows).assign(correction='Holm')
    tail = ('. Simultaneous intervals: Bonferroni over the family. Exploratory and sensitivity rows are outside this '
            'count and carry no verdict.')
    assert findings_summary(table) == ('Of the 3 declared claims, adjusted together (Holm): 1 decided as declared (`a`); '
                                       '1 decided against the declared direction (`c`); 1 not decided (`b`)' + tail)
    table.loc[3, 'verdict'] = 'not computed'    # c's study not published yet: it counts at p = 1 until it is
    assert findings_summary(table).endswith('; 1 not decided (`b`); 1 not computed yet (`c`)' + tail + ' The claims '
                                            'not computed yet count at p = 1 until they are, so a "not decided" may '
                                            'still turn decided; a "decided" stays.')
    table.loc[table.role == 'claim', 'verdict'] = 'not computed'
    assert findings_summary(table) == 'None of the 3 declared claims is computed yet: their studies are not published.'
    table.loc[0, 'verdict'] = 'decided, as declaredd'       # a hand-edited verdict is named, not miscounted
    with pytest.raises(ValueError, match="verdict 'decided, as declaredd' is not one evaluate_registry writes"):
        findings_summary(table)


def test_replace_findings_needs_the_markers():
    from moga_lab.studies.findings import replace_findings
    with pytest.raises(ValueError, match='no findings block'):
        replace_findings('# a README without markers\n', '| a |\n')


def test_a_training_takes_the_learning_rate_the_sweep_chose(tmp_path, capsys):
    """``moga-fit --lr-from sweep.csv``: the validation split's choice, never a number copied by hand."""
    from moga_lab.cli import fit as fit_cli
    from moga_lab.training.sweep import SWEEP_COLUMNS, chosen_lr
    sweep = tmp_path / 'sweep.csv'
    pd.DataFrame([dict(model='moganet_xtiny', lr=1e-3, val_top1=80.0, val_images=5000, epochs=1, seed=0, chosen=False),
                  dict(model='moganet_xtiny', lr=4e-3, val_top1=82.5, val_images=5000, epochs=1, seed=0, chosen=True)],
                 columns=SWEEP_COLUMNS).to_csv(sweep, index=False)
    assert chosen_lr(str(sweep), 'moganet_xtiny') == 4e-3
    with pytest.raises(ValueError, match=r'no sweep of convnext_atto \(it has moganet_xtiny\)'):
        chosen_lr(str(sweep), 'convnext_atto')
    # a study's published sweep table holds every model's rows: each training reads its own model's
    published = tmp_path / 'published.csv'
    pd.concat([pd.read_csv(sweep), pd.DataFrame([dict(model='convnext_atto', lr=1e-3, val_top1=99.0, val_images=5000,
                                                      epochs=1, seed=0, chosen=True)])]).to_csv(published, index=False)
    assert chosen_lr(str(published), 'moganet_xtiny') == 4e-3
    assert chosen_lr(str(published), 'convnext_atto') == 1e-3
    with pytest.raises(ValueError, match='no such file'):
        chosen_lr(str(tmp_path / 'missing.csv'), 'moganet_xtiny')
    # a grid widened by a second sweep: the choice is made over both files (its own 'chosen' column is not read)
    wide = tmp_path / 'wide.csv'
    rows = [dict(model='moganet_xtiny', lr=5e-4, val_top1=78.0, val_images=5000, epochs=1, seed=0, chosen=False),
            dict(model='moganet_xtiny', lr=8e-3, val_top1=83.0, val_images=5000, epochs=1, seed=0, chosen=True)]
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(wide, index=False)
    assert chosen_lr([str(sweep), str(wide)], 'moganet_xtiny') == 8e-3
    rows[1]['val_top1'] = 82.0
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(wide, index=False)
    assert chosen_lr([str(sweep), str(wide)], 'moganet_xtiny') == 4e-3
    rows[0]['epochs'] = rows[1]['epochs'] = 2
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(wide, index=False)
    with pytest.raises(ValueError, match=r'sweeps of different epochs \(\[1, 2\]\); accepted: one budget'):
        chosen_lr([str(sweep), str(wide)], 'moganet_xtiny')
    args = fit_cli.build_parser().parse_args(['--variant', 'xtiny', '--data', 'synthetic', '--lr-from', str(sweep),
                                              '--run-dir', str(tmp_path / 'r')])
    assert fit_cli.resolve_config(args).optim.lr == 4e-3
    rows[0]['epochs'] = rows[1]['epochs'] = 1
    rows[1]['val_top1'] = 83.0
    pd.DataFrame(rows, columns=SWEEP_COLUMNS).to_csv(wide, index=False)
    args = fit_cli.build_parser().parse_args(['--variant', 'xtiny', '--data', 'synthetic', '--lr-from', str(sweep),
                                              str(wide), '--run-dir', str(tmp_path / 'r')])
    assert fit_cli.resolve_config(args).optim.lr == 8e-3
    with pytest.raises(SystemExit) as stop:
        fit_cli.main(['--variant', 'xtiny', '--data', 'synthetic', '--lr', '1e-3', '--lr-from', str(sweep)])
    assert stop.value.code == 2 and 'give one of them' in capsys.readouterr().err


def test_each_study_folder_gets_the_verdicts_of_its_own_claims(tmp_path):
    from moga_lab.studies.findings import evaluate_declared
    (tmp_path / 'mkdocs.yml').write_text('site_name: t\n')
    _study(tmp_path / 'one', dict(moga=0.05), seed=1)
    _study(tmp_path / 'two', dict(moga=0.0), seed=2)
    claims = [dict(id=f'gap_{s}', test='middle_share', study=s, a='moga', b='base', what=f'gap in {s}')
              for s in ('one', 'two')]
    from moga_lab.studies.findings import REPORT_CLAIMS_END, REPORT_CLAIMS_START
    # a published report's claims block, from before the family's other study was published
    (tmp_path / 'one' / 'report.md').write_text(f'# One\n\nintro\n\n{REPORT_CLAIMS_START}\n## Declared claims\n\n'
                                                f'| gap_one | stale |\n{REPORT_CLAIMS_END}\n\n## Where it ran\n\n- here\n')
    (tmp_path / 'two' / 'report.md').write_text('# Two\n\nno claims block\n')
    table = evaluate_declared(_registry(tmp_path / 'c.yaml', claims), out=str(tmp_path / 'all'))
    one, two = (pd.read_csv(tmp_path / s / 'claims.csv') for s in ('one', 'two'))
    report = (tmp_path / 'one' / 'report.md').read_text()
    assert 'stale' not in report and report.startswith('# One\n\nintro\n\n' + REPORT_CLAIMS_START + '\n## Declared')
    assert report.endswith(f'{REPORT_CLAIMS_END}\n\n## Where it ran\n\n- here\n') and report.count('gap_one') == 4
    assert '- `gap_one`: between +' in report            # its effect at the family's level, in a line
    assert f'| {one.verdict.iloc[0]} |' in report and 'gap_two' not in report
    assert (tmp_path / 'two' / 'report.md').read_text() == '# Two\n\nno claims block\n'
    assert set(one.claim_id) == {'gap_one'} and set(two.claim_id) == {'gap_two'}
    assert list(one.columns[:9]) == ['claim_id', 'estimate', 'low', 'high', 'p', 'p_adjusted', 'verdict',
                                     'statistic', 'design']
    assert {'pairing', 'alternative', 'family_low', 'family_high', 'decidable_effect', 'bias_bound'} <= set(one.columns)
    assert len(pd.read_csv(tmp_path / 'all' / 'claims.csv')) == len(table) == 4   # 2 claims x 2 statistics
    # the adjustment is over the whole family, not per folder
    assert one.family_size.iloc[0] == 2 and one.verdict.iloc[0].endswith('(Holm over 2 claims)')
    assert 'Claims declared in' in table.attrs['markdown']
