"""Claims declared before their data exist (`moga_lab.studies.registry`), computed from a published study's tables
and adjusted as a family.

Every test follows one rule: the estimate is the mean over training seeds of the per-seed difference a - b (or the
difference of the two models' means when the claim's ``pairing`` is ``none``), and its interval and p-value carry
every source of error the study's tables let the data show: training seeds, images, and the pairs and contexts drawn
per image (`moga_lab.analysis.uncertainty.seeds_by_images`: a crossed random-effects model, t with the terms'
degrees of freedom). The p-value follows the declared ``alternative``.

* ``middle_share_seeds``: the middle-order share (`moga_lab.analysis.seeds.middle_share_difference_over_seeds`), over
  seeds and images; ``middle_share``: the same on one checkpoint each (over images).
* ``top1``: test top-1 over seeds, plus the test set's sampling (binomial, per-image predictions not being published:
  an upper bound when the two models err on the same images).
* ``gradcam``: the per-image share of the Grad-CAM map on the object, over images and seeds where the study has maps
  of several; all-zero maps as the claim's ``zero_maps`` declares.
* ``change``: a claim's effect in its study minus in ``other_study`` (independent images): their variances add.

`evaluate_registry` adjusts the family's claims (the declared statistic of every claim that is neither exploratory
nor a sensitivity check) by Holm (or Benjamini-Hochberg), gives each its simultaneous interval at the family's level
(Bonferroni, ``family_low`` / ``family_high``) and the effect it could decide with 80 % power at Holm's strictest step
(``decidable_effect``), and words the verdict. Rows outside the family carry no verdict: exploratory claims their
unadjusted p, sensitivity rows (the other statistic, or a claim declared ``sensitivity``) their estimate and
interval alone.
"""
import math
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from moga_lab.analysis.curves import share_bias_bound
from moga_lab.analysis.tables import design_of, resolve_statistic
from moga_lab.analysis.multiplicity import ADJUSTMENTS, benjamini_hochberg, family_level, holm
from moga_lab.analysis.power import decidable_effect
from moga_lab.analysis.seeds import middle_share_difference_over_seeds
from moga_lab.analysis.uncertainty import (SeedImageInterval, p_value, proportion_difference_variance, seeds_by_images,
                                           share_weighted_df, t_interval)
from moga_lab.studies.registry import CORRECTIONS, INTERACTION_TESTS, Claim, load_registry

__all__ = ['ClaimResult', 'evaluate_registry', 'CLAIM_COLUMNS', 'verdict_outcome', 'repository_root', 'holm',
           'benjamini_hochberg', 'load_registry', 'REQUIRED_COLUMNS', 'read_study_table']

CLAIM_COLUMNS = ['claim_id', 'estimate', 'low', 'high', 'p', 'p_adjusted', 'verdict', 'statistic', 'design', 'primary',
                 'role', 'family_low', 'family_high', 'decidable_effect', 'bias_bound', 'pairing', 'alternative',
                 'sources', 'family', 'family_size', 'correction', 'test', 'df', 'se', 'what', 'note', 'exploratory']
"""The columns of `evaluate_registry`'s table and of ``claims.csv``."""
REQUIRED_COLUMNS = {
    'interaction_seeds.csv': ('model', 'seed', 'image_id', 'ratio'),
    'interaction.csv': ('model', 'image_id', 'ratio'),
    'accuracy.csv': ('model', 'seed', 'test_top1'),
    'gradcam.csv': ('model', 'image_id', 'cam_on_garment', 'garment_area'),
}
"""What each study table must hold for the tests that read it (and the statistic's own column: ``J_abs`` or ``I2``)."""
STATISTIC_COLUMNS = {'mean-abs': ('J_abs', 'noise_floor'), 'rms': ('I2',)}


@dataclass
class ClaimResult:
    """A claim's estimate and its evidence under one statistic.

    Args:
        interval: the estimate with its interval over seeds and images.
        design: the interaction design the data came from ('test set' for the other tests).
        note: how it was computed, or a caveat.
        bias_bound: the most the statistic's bias can move the estimate (mean |I| shares; 0 for the RMS, whose
            square is unbiased; NaN where no strength statistic is involved).
    """
    interval: SeedImageInterval
    design: str = ''
    note: str = ''
    bias_bound: float = float('nan')


def read_study_table(root: str, study: str, name: str, needs: Sequence[str] = ()) -> Optional[pd.DataFrame]:
    """A published study's table, or None when the study has not published it yet; a ValueError names the columns
    a table lacks (one line: the file, what is missing, what the tests need).

    Args:
        root: the repository root.
        study: the study folder, relative to it.
        name: the table's file name (a key of `REQUIRED_COLUMNS`).
        needs: further columns the test reads.
    """
    path = os.path.join(root, study, name)
    if not os.path.isfile(path):
        return None
    table = pd.read_csv(path)
    wanted = tuple(REQUIRED_COLUMNS.get(name, ())) + tuple(needs)
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        # named from the repository root: the message lands in claims.csv, which must not carry this machine's paths
        raise TableError(f'{os.path.join(study, name)} has no {", ".join(missing)} column(s); accepted: a table with '
                         f'{", ".join(wanted)}')
    return table


class TableError(ValueError):
    """A published table without the columns a test needs: refused, not reported as "not computed"."""


def _missing(study: str, name: str) -> ValueError:
    return ValueError(f'{os.path.join(study, name)} is missing: publish the study before evaluating its claims')


def _middle_share(claim: Claim, root: str, statistic: str) -> ClaimResult:
    seeded = claim.test == 'middle_share_seeds'
    name = 'interaction_seeds.csv' if seeded else 'interaction.csv'
    frame = read_study_table(root, claim.study, name, STATISTIC_COLUMNS[statistic])
    if frame is None:
        raise _missing(claim.study, name)
    frame = frame[frame.model.isin([claim.a, claim.b])]
    if not seeded:
        frame = frame.assign(seed=0) if 'seed' not in frame.columns else frame
    result = middle_share_difference_over_seeds(frame, claim.a, claim.b, statistic=statistic, pairing=claim.pairing,
                                                alternative=claim.alternative, per_seed_intervals=seeded)
    iv = result.interval
    bias = 0.0
    if statistic == 'mean-abs':
        bias = float(np.mean([share_bias_bound(frame[frame.seed == s], m) for m in (claim.a, claim.b)
                              for s in frame[frame.model == m].seed.unique()]) * 2)
    per_seed = ''
    if claim.pairing == 'seed' and iv.num_seeds > 1:
        per_seed = '; per seed: ' + ', '.join(f'{d.difference:+.3f}' for d in result.per_seed.values())
    note = (f'{_rule(iv, claim.pairing)} over {iv.num_seeds} seed(s) x {iv.num_images} images (df {iv.df:.1f})'
            + per_seed)
    return ClaimResult(iv, design_of(frame), note, bias)


def _rule(iv: SeedImageInterval, pairing: str) -> str:
    layout = {'crossed': 'seeds and images crossed', 'nested': 'images nested in seeds', 'images': 'images',
              'seeds': 'seeds'}[iv.layout]
    paired = 'paired by seed' if pairing == 'seed' else 'seeds independent'
    return f't ({layout}; {paired})'


def _top1(claim: Claim, root: str, statistic: str) -> ClaimResult:
    acc = read_study_table(root, claim.study, 'accuracy.csv')
    if acc is None:
        raise _missing(claim.study, 'accuracy.csv')
    by = {m: acc[acc.model == m].set_index('seed').test_top1.astype(float) for m in (claim.a, claim.b)}
    for m, values in by.items():
        if values.empty:
            raise ValueError(f'claim {claim.id}: accuracy.csv has no row for {m}')
    n = int(claim.extra.get('test_images', 10_000))
    extra = proportion_difference_variance(by[claim.a].mean() / 100, by[claim.b].mean() / 100, n) * 100 ** 2
    if claim.pairing == 'seed':
        common = sorted(set(by[claim.a].index) & set(by[claim.b].index))
        if len(common) < 2:
            raise ValueError(f'claim {claim.id}: {len(common)} seed(s) of both models; pairing by seed needs 2 or more')
        iv = seeds_by_images((by[claim.a][common] - by[claim.b][common]).to_numpy(), layout='seeds',
                             alternative=claim.alternative, extra_variance=extra, extra_df=n - 1)
    else:
        iv = seeds_by_images(by[claim.a].to_numpy(), layout='seeds', alternative=claim.alternative,
                             extra_variance=extra, extra_df=n - 1, minus=(by[claim.b].to_numpy(), None))
    note = (f'{_rule(iv, claim.pairing)} over {len(by[claim.a])} / {len(by[claim.b])} seeds, plus the test set\'s '
            f'sampling ({n} images, binomial: an upper bound, the models erring on the same images) (df {iv.df:.1f})')
    iv = replace(iv, sources='training seeds and the test images (binomial bound; per-image predictions unpublished)')
    return ClaimResult(iv, 'test set', note)


def _gradcam(claim: Claim, root: str, statistic: str) -> ClaimResult:
    cams = read_study_table(root, claim.study, 'gradcam.csv')
    if cams is None:
        raise _missing(claim.study, 'gradcam.csv')
    cams = cams.assign(seed=0) if 'seed' not in cams.columns else cams
    zero = cams.cam_on_garment.isna()
    if claim.zero_maps == 'uniform':
        cams = cams.assign(cam_on_garment=cams.cam_on_garment.where(~zero, cams.garment_area))
    elif claim.zero_maps == 'zero':
        cams = cams.assign(cam_on_garment=cams.cam_on_garment.fillna(0.0))
    wide = cams.pivot_table(index=['seed', 'image_id'], columns='model', values='cam_on_garment', dropna=False)
    for m in (claim.a, claim.b):
        if m not in wide.columns:
            raise ValueError(f'claim {claim.id}: gradcam.csv has no maps of {m}')
    diff = (wide[claim.a] - wide[claim.b]).unstack('seed')          # images x seeds
    dropped = int(diff.isna().any(axis=1).sum())
    diff = diff.dropna()                                              # (drop: the images with a zero map on any seed)
    if len(diff) < 2:
        raise ValueError(f'claim {claim.id}: {len(diff)} image(s) with maps of both models')
    values = diff.to_numpy().T                                        # [seeds, images]
    iv = seeds_by_images(values.mean(1), values, 'crossed', claim.alternative)   # (a mean's pseudo-values: its values)
    zeros = int(zero[cams.model.isin([claim.a, claim.b])].sum())
    handled = {'drop': f'{dropped} image(s) with an all-zero map dropped', 'uniform': f'{zeros} all-zero map(s) '
               'counted as evenly spread', 'zero': f'{zeros} all-zero map(s) counted as no mass on the object'}
    note = (f'{_rule(iv, claim.pairing)} over {values.shape[0]} seed(s) x {values.shape[1]} images (df {iv.df:.1f}); '
            f'zero maps: {claim.zero_maps} ({handled[claim.zero_maps]})')
    return ClaimResult(iv, 'test set', note)


def _change(claim: Claim, base: Claim, base_result: ClaimResult, root: str, statistic: str) -> ClaimResult:
    other = Claim(**{**base.__dict__, 'study': claim.other_study})
    other_result = RUNNERS[base.test](other, root, statistic)
    one, two = base_result.interval, other_result.interval
    estimate = one.estimate - two.estimate
    terms = [(one.se ** 2, one.df), (two.se ** 2, two.df)]
    var = sum(v for v, _ in terms)
    df = share_weighted_df(terms)
    se = math.sqrt(var)
    iv = SeedImageInterval(estimate, se, df, *t_interval(estimate, se, df, 0.95),
                           p_value(estimate, se, df, claim.alternative), claim.alternative, 'settings',
                           max(one.num_seeds, two.num_seeds), one.num_images, dict(settings=var), one.sources)
    patch = ('the patch size in pixels is the same in both settings' if claim.patch_px == 'same' else
             'the patch size in pixels differs between the settings: a change may come from it, not from resolution')
    bias = base_result.bias_bound + other_result.bias_bound
    return ClaimResult(iv, base_result.design, f'{claim.of} in {base.study} minus in {claim.other_study} '
                                               f'(independent images: variances add); ' + patch, bias)


RUNNERS: Dict[str, Callable[..., ClaimResult]] = dict(middle_share=_middle_share, middle_share_seeds=_middle_share,
                                                      top1=_top1, gradcam=_gradcam)


_VERDICTS = {'as declared': 'decided, as declared', 'against': 'decided, against the declared direction',
             'not decided': 'not decided', 'not computed': 'not computed', 'exploratory': 'exploratory',
             'sensitivity': 'sensitivity'}
"""The outcomes a verdict can name, by key, and the words that open its text (`verdict_outcome` reads them back)."""


def verdict_outcome(verdict: str) -> str:
    """The outcome a verdict written by `evaluate_registry` states: one key of ``'as declared'``, ``'against'``,
    ``'not decided'``, ``'not computed'``, ``'exploratory'``, ``'sensitivity'``. A ``ValueError`` names any other text
    (a hand-edited ``claims.csv``).

    Args:
        verdict: a ``verdict`` cell of `evaluate_registry`'s table or of ``claims.csv``.
    """
    for key, text in _VERDICTS.items():
        if verdict == text or verdict.startswith(text + ' ('):
            return key
    raise ValueError(f'verdict {verdict!r} is not one evaluate_registry writes; accepted: it starts with one of '
                     f'{", ".join(repr(t) for t in _VERDICTS.values())}')


def _verdict(row: Dict[str, Any], claim: Claim, alpha: float, correction: str, size: int, missing: int) -> str:
    if row['estimate'] != row['estimate']:
        return _VERDICTS['not computed']
    if row['role'] == 'sensitivity':
        return f'{_VERDICTS["sensitivity"]} (estimate and interval only, no verdict)'
    if row['role'] == 'exploratory':
        return f'{_VERDICTS["exploratory"]} (unadjusted p = {row["p"]:.2g}, no verdict)'
    pending = f'; {missing} not computed yet, at p = 1' if missing else ''
    scope = f'{CORRECTIONS[correction]} over {size} claims{pending}'
    if row['p_adjusted'] >= alpha:
        return f'{_VERDICTS["not decided"]} ({scope})'
    as_declared = (row['estimate'] > 0) == (claim.direction == 'greater')
    return f'{_VERDICTS["as declared" if as_declared else "against"]} ({scope})'


def evaluate_registry(path: str) -> pd.DataFrame:
    """Compute every claim a registry declares and adjust over its family.

    Interaction claims are computed under their declared (primary) statistic and, as a sensitivity row without a
    verdict, under the other noise-removed one. The family is the primary rows of the claims that are neither
    exploratory nor sensitivity checks, adjusted by the registry's correction; each gets its simultaneous interval at
    the family's level (Bonferroni) and the effect it would decide with 80 % power at Holm's strictest step. A claim
    whose study is not published yet stays in the family at p = 1 (both corrections are monotone in every p, so the
    verdicts read now can only strengthen once it is computed).

    Args:
        path: the registry file.

    Returns:
        One row per claim and statistic, columns `CLAIM_COLUMNS`.

    Raises:
        ValueError: a bad registry, or a published table without the columns a test needs.
    """
    registry = load_registry(path)
    root, correction, alpha = repository_root(registry['root']), registry['correction'], registry['alpha']
    claims = {c.id: c for c in registry['claims']}
    rows: List[Dict[str, Any]] = []
    results: Dict[tuple, ClaimResult] = {}
    for claim in registry['claims']:
        interaction = claim.test in INTERACTION_TESTS
        statistics = [claim.statistic] + [s for s in ('mean-abs', 'rms') if s != claim.statistic] if interaction \
            else ['']
        for statistic in statistics:
            primary = statistic == statistics[0]
            try:
                if claim.test == 'change':
                    base = claims[claim.of]
                    result = _change(claim, base, results[(base.id, statistic)], root, statistic)
                else:
                    result = RUNNERS[claim.test](claim, root, statistic)
            except TableError:
                raise
            except (ValueError, KeyError) as error:
                result = None
                note = f'not computed: {error}'
            if result is not None:
                results[(claim.id, statistic)] = result
                iv, note = result.interval, result.note
            caveat = claim.extra.get('caveat')
            note = f'{note}; caveat: {caveat}' if caveat else note
            nan = float('nan')
            role = claim.role if primary else 'sensitivity'
            rows.append(dict(claim_id=claim.id, estimate=iv.estimate if result else nan,
                             low=iv.low if result else nan, high=iv.high if result else nan,
                             p=(iv.p if result and role != 'sensitivity' else nan), se=iv.se if result else nan,
                             df=iv.df if result else nan, statistic=resolve_statistic(statistic) if statistic else '',
                             design=result.design if result else '', primary=primary, role=role,
                             bias_bound=result.bias_bound if result else nan, pairing=claim.pairing,
                             alternative=claim.alternative, sources=iv.sources if result else '',
                             family=registry['family'], correction=CORRECTIONS[correction], test=claim.test,
                             what=claim.what, note=note, exploratory=claim.exploratory))
    table = pd.DataFrame(rows)
    in_family = (table.role == 'claim').to_numpy()
    size = int(in_family.sum())
    table['family_size'] = size
    table['p_adjusted'] = np.nan
    if size:
        table.loc[in_family, 'p_adjusted'] = ADJUSTMENTS[correction](table.loc[in_family, 'p'].fillna(1.0).to_numpy())
    table.loc[table.p.isna(), 'p_adjusted'] = np.nan
    level = family_level(alpha, size)
    family_low, family_high, decidable = [], [], []
    for r in table.itertuples():
        ok = r.role == 'claim' and r.estimate == r.estimate
        if ok:
            iv = SeedImageInterval(r.estimate, r.se, r.df, r.low, r.high, r.p, r.alternative, '', 0, 0)
            lo, hi = iv.interval(level)
            decidable.append(decidable_effect(r.se, r.df, alpha / max(size, 1), 0.8, r.alternative))
        else:
            lo = hi = float('nan')
            decidable.append(float('nan'))
        family_low.append(lo)
        family_high.append(hi)
    table['family_low'], table['family_high'], table['decidable_effect'] = family_low, family_high, decidable
    missing = int((in_family & table.p.isna().to_numpy()).sum())
    table['verdict'] = [_verdict(r._asdict(), claims[r.claim_id], alpha, correction, size, missing)
                        for r in table.itertuples()]
    return table[CLAIM_COLUMNS]


def repository_root(folder: str) -> str:
    """Study paths in a registry are relative to the repository: the nearest folder above the registry holding
    ``mkdocs.yml`` or ``.git`` (else the registry's own folder).

    Args:
        folder: the registry's folder.
    """
    here = folder
    while True:
        if any(os.path.exists(os.path.join(here, marker)) for marker in ('.git', 'mkdocs.yml')):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return folder
        here = parent
