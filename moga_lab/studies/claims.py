"""Claims declared before their data exist, tested as a family.

A **registry** (YAML) declares each hypothesis: what is compared, in which study folder, with which statistic, in
which direction and by which test. It is committed before the studies it names are computed (git history shows the
order). `evaluate_registry` computes every declared claim from the published study files, adjusts the p-values over
the family (Holm by default: it controls the family-wise error rate under any dependence between the claims, which
share models and images; Benjamini-Hochberg on request, which controls the false discovery rate and assumes positive
dependence) and writes a verdict that names the correction and the family size.

Registry layout::

    family: compare28              # the family the claims are adjusted in
    correction: holm               # or bh
    alpha: 0.05
    claims:
      - id: moga_above_convnext_middle
        what: MogaNet-XT has a larger middle-order share than ConvNeXt-atto
        why: the paper's Fig. 3
        test: middle_share           # middle_share | middle_share_seeds | top1 | gradcam | change
        study: docs/studies/compare  # a folder of the published study (relative to the registry's folder's root)
        a: moganet_xtiny
        b: convnext_atto
        statistic: mean-abs          # the primary one; the verdict under the other is reported beside it
        direction: greater           # a - b > 0
      - id: resolution_changes_the_gap
        test: change                 # (a - b at setting 1) - (a - b at setting 2): the difference of the effects
        of: moga_above_convnext_middle
        other_study: docs/studies/compare56
        patch_px: same               # same | differs: whether the two settings keep the patch size in pixels

Tests (all two-sided p-values; the verdict reads the sign):

* ``middle_share``: the middle-order share of ``a`` minus ``b`` on the same images, paired bootstrap over images.
* ``middle_share_seeds``: that difference on each training seed's checkpoints (seed k of ``a`` with seed k of
  ``b``), then a one-sample t-test over the seeds' differences with S - 1 degrees of freedom (stated in the row);
  at 3 seeds a t interval still holds if the per-seed differences are near normal, and its width says how little
  three seeds decide.
* ``top1``: test top-1 of ``a`` minus ``b``; with several seeds of both, Welch's t over the seeds (Welch-Satterthwaite
  degrees of freedom stated); with one seed each, the two-proportion z-test on the test images (which covers the
  test images, not seed-to-seed variation: said in the row).
* ``gradcam``: the per-image share of the Grad-CAM map on the object, ``a`` minus ``b``, paired bootstrap over images.
* ``change``: a declared claim's effect in its study minus the same effect in ``other_study``, the two bootstrap
  distributions differenced (the settings' images are drawn independently). A claim that an effect *changes* is
  decided only by this test, never by comparing two verdicts.
"""
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from moga_lab.analysis.bootstrap import bootstrap_images
from moga_lab.analysis.games import design_of, middle_share_difference, resolve_statistic

__all__ = ['Claim', 'ClaimResult', 'TESTS', 'CORRECTIONS', 'load_registry', 'holm', 'benjamini_hochberg', 'evaluate_declared',
           'findings_summary', 'evaluate_registry', 'bootstrap_p', 'CLAIM_COLUMNS', 'claims_markdown',
           'claim_cells', 'verdict_outcome', 'report_claims_section']

TESTS = ('middle_share', 'middle_share_seeds', 'top1', 'gradcam', 'change')
"""The tests a claim can name: a paired middle-share difference over images (one checkpoint each), a one-sample t
over training seeds' paired differences, top-1 (Welch over seeds, or a two-proportion z for one seed), paired
Grad-CAM mass over images, and the change of an effect between two settings (difference of the differences)."""
CORRECTIONS = {'holm': 'Holm', 'bh': 'Benjamini-Hochberg'}
"""Family-wise adjustments a registry can name (Holm: family-wise error; Benjamini-Hochberg: false discovery rate)."""
DIRECTIONS = ('greater', 'less')
CLAIM_COLUMNS = ['claim_id', 'estimate', 'low', 'high', 'p', 'p_adjusted', 'verdict', 'statistic', 'design', 'primary',
                 'family', 'family_size', 'correction', 'test', 'df', 'what', 'note', 'exploratory']
"""The columns of `evaluate_registry`'s table and of ``claims.csv``."""
INTERACTION_TESTS = ('middle_share', 'middle_share_seeds', 'change')


@dataclass
class Claim:
    """One declared hypothesis (a registry entry).

    Args:
        id: unique in the registry.
        test: one of `TESTS`.
        what: the claim in words.
        why: where the paper makes it.
        study: the study folder that holds its data, relative to the repository.
        a: the model or row expected to be larger (``direction: greater``).
        b: the one it is compared with.
        statistic: ``mean-abs`` or ``rms`` (interaction tests).
        direction: ``greater`` or ``less``: the sign the claim declares for a minus b.
        of: ``change`` only: the claim whose effect changes.
        other_study: ``change`` only: the study of the other setting.
        patch_px: ``change`` only: ``same`` or ``differs``, whether the settings keep the patch size in pixels.
        exploratory: outside the family: reported unadjusted.
        extra: the entry's other keys (e.g. ``baseline``), kept for the test that reads them.
    """
    id: str
    test: str
    what: str = ''
    why: str = ''
    study: str = ''
    a: str = ''
    b: str = ''
    statistic: str = 'mean-abs'
    direction: str = 'greater'
    of: str = ''
    other_study: str = ''
    patch_px: str = ''
    exploratory: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ClaimResult:
    """A claim's estimate and its evidence.

    Args:
        estimate: a minus b.
        low: the 95 % interval's lower end.
        high: its upper end.
        p: the two-sided p-value of "no difference".
        df: the t test's degrees of freedom (seed tests).
        design: the interaction design the data came from.
        note: why it was not computed, or a caveat.
        draws: the bootstrap draws of the estimate (for ``change``).
    """
    estimate: float
    low: float
    high: float
    p: float
    df: float = float('nan')
    design: str = ''
    note: str = ''
    draws: Optional[np.ndarray] = None


def load_registry(path: str) -> Dict[str, Any]:
    """Read and check a registry file: ``{family, correction, alpha, claims: [Claim, ...], root}``.

    Args:
        path: the registry (YAML).

    Raises:
        ValueError: a missing or unknown field, test, statistic, direction or correction, a repeated id, or a
            ``change`` claim naming a claim that is not declared before it; the message names the value and what is
            accepted.
    """
    import yaml
    if not os.path.isfile(path):
        raise FileNotFoundError(f'claims registry {path!r} does not exist')
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    correction = str(raw.get('correction', 'holm')).lower()
    if correction not in CORRECTIONS:
        raise ValueError(f'{path}: correction {correction!r} is not accepted; accepted: {", ".join(CORRECTIONS)}')
    if not raw.get('family') or not raw.get('claims'):
        raise ValueError(f'{path}: needs a family name and a list of claims')
    known = {f for f in Claim.__dataclass_fields__ if f != 'extra'}
    claims, seen = [], set()
    for entry in raw['claims']:
        entry = dict(entry)
        cid = entry.get('id')
        if not cid or cid in seen:
            raise ValueError(f'{path}: every claim needs an id of its own; got {cid!r}')
        claim = Claim(**{k: v for k, v in entry.items() if k in known},
                      extra={k: v for k, v in entry.items() if k not in known})
        if claim.test not in TESTS:
            raise ValueError(f'{path}: claim {cid}: test {claim.test!r} is not accepted; accepted: {", ".join(TESTS)}')
        if claim.direction not in DIRECTIONS:
            raise ValueError(f'{path}: claim {cid}: direction {claim.direction!r} is not accepted; accepted: '
                             f'{", ".join(DIRECTIONS)}')
        claim.statistic = resolve_statistic(claim.statistic) if claim.test in INTERACTION_TESTS else claim.statistic
        if claim.test == 'change':
            if claim.of not in seen:
                raise ValueError(f'{path}: claim {cid} changes claim {claim.of!r}, which is not declared before it')
            if claim.patch_px not in ('same', 'differs'):
                raise ValueError(f'{path}: claim {cid}: patch_px {claim.patch_px!r} is not accepted; accepted: same, '
                                 'differs (do the two settings keep the patch size in pixels?)')
        seen.add(cid)
        claims.append(claim)
    return dict(family=str(raw['family']), correction=correction, alpha=float(raw.get('alpha', 0.05)),
                claims=claims, root=os.path.dirname(os.path.abspath(path)))


# ---- multiplicity ---------------------------------------------------------------------------------

def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate, any dependence). Written here because scipy has
    only Benjamini-Hochberg (``scipy.stats.false_discovery_control``) and statsmodels is not a dependency.

    Args:
        p: the family's p-values.
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[k]))
        adjusted[k] = running
    return adjusted


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; scipy's implementation).

    Args:
        p: the family's p-values.
    """
    from scipy.stats import false_discovery_control
    return false_discovery_control(np.asarray(p, dtype=float), method='bh')


# ---- the tests ------------------------------------------------------------------------------------

def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided p-value of "the effect is 0" from bootstrap draws of the effect: twice the smaller tail beyond 0,
    the level at which the percentile interval starts to exclude 0 (at least 1 / number of draws).

    Args:
        draws: bootstrap draws of the effect.
    """
    draws = np.asarray(draws, dtype=float)
    tail = min(np.mean(draws <= 0), np.mean(draws >= 0))
    return float(min(1.0, max(2 * tail, 1.0 / len(draws))))


def _interval(draws: np.ndarray):
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def _read(root: str, study: str, name: str, required: bool = True) -> Optional[pd.DataFrame]:
    path = os.path.join(root, study, name)
    if not os.path.isfile(path):
        if required:
            # named from the repository root: the message lands in claims.csv, which must not carry this machine's paths
            raise ValueError(f'{os.path.join(study, name)} is missing: publish the study before evaluating its claims')
        return None
    return pd.read_csv(path)


def _paired_share_draws(frame: pd.DataFrame, a: str, b: str, statistic: str, num_bootstrap: int, seed: int):
    d = middle_share_difference(frame, a, b, statistic, num_bootstrap=num_bootstrap, seed=seed, return_draws=True)
    return d['difference'], d['draws'], d['num_images']


def _middle_share(claim: Claim, root: str, statistic: str, num_bootstrap: int, seed: int) -> ClaimResult:
    frame = _read(root, claim.study, 'interaction.csv')
    frame = frame[frame.model.isin([claim.a, claim.b])]
    estimate, draws, n = _paired_share_draws(frame, claim.a, claim.b, statistic, num_bootstrap, seed)
    low, high = _interval(draws)
    return ClaimResult(estimate, low, high, bootstrap_p(draws), design=design_of(frame),
                       note=f'paired bootstrap over {n} images', draws=draws)


def _middle_share_seeds(claim: Claim, root: str, statistic: str, num_bootstrap: int, seed: int) -> ClaimResult:
    from scipy import stats
    frame = _read(root, claim.study, 'interaction_seeds.csv')
    diffs = []
    for s in sorted(set(frame[frame.model == claim.a].seed) & set(frame[frame.model == claim.b].seed)):
        sub = frame[frame.seed == s]
        diffs.append(_paired_share_draws(sub, claim.a, claim.b, statistic, 2, seed)[0])
    if len(diffs) < 2:
        raise ValueError(f'claim {claim.id}: {len(diffs)} training seed(s) hold curves of both {claim.a} and '
                         f'{claim.b}; a test across seeds needs 2 or more')
    d = np.asarray(diffs)
    mean, se, df = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1
    if se == 0:
        return ClaimResult(mean, mean, mean, 0.0 if mean else 1.0, df, design_of(frame), f'{len(d)} seeds, no spread')
    t = stats.t.ppf(0.975, df)
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return ClaimResult(mean, mean - t * se, mean + t * se, p, df, design_of(frame),
                       f'one-sample t over {len(d)} seeds (df {df}); per seed: '
                       + ', '.join(f'{x:+.3f}' for x in d))


def _top1(claim: Claim, root: str, statistic: str, num_bootstrap: int, seed: int) -> ClaimResult:
    from scipy import stats
    acc = _read(root, claim.study, 'accuracy.csv')
    top1 = 'test_top1' if 'test_top1' in acc.columns else next(c for c in acc.columns if 'top1' in c and 'val' not in c)
    name = 'model' if 'model' in acc.columns else acc.columns[0]
    a = acc[acc[name] == claim.a][top1].astype(float).to_numpy()
    b = acc[acc[name] == claim.b][top1].astype(float).to_numpy()
    if not len(a) or not len(b):
        raise ValueError(f'claim {claim.id}: accuracy.csv has no row for {claim.a if not len(a) else claim.b}')
    if len(a) >= 2 and len(b) >= 2:
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(0.95)
        return ClaimResult(float(a.mean() - b.mean()), float(ci.low), float(ci.high), float(res.pvalue), float(res.df),
                           'test set', f'Welch t over {len(a)} / {len(b)} seeds (df {float(res.df):.1f})')
    n = int(claim.extra.get('test_images', 10_000))
    pa, pb = a.mean() / 100, b.mean() / 100
    se = math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n) * 100
    diff = float(a.mean() - b.mean())
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float(diff == 0)
    return ClaimResult(diff, diff - 1.959963984540054 * se, diff + 1.959963984540054 * se, p, float('nan'),
                       'test set', f'two-proportion z on {n} test images, {len(a)} / {len(b)} seed(s): does not cover '
                                   'seed-to-seed variation')


def _gradcam(claim: Claim, root: str, statistic: str, num_bootstrap: int, seed: int) -> ClaimResult:
    cams = _read(root, claim.study, 'gradcam.csv')
    table = cams.pivot_table(index='image_id', columns='model', values='cam_on_garment')
    diff = (table[claim.a] - table[claim.b]).dropna().to_numpy()
    _, _, draws = bootstrap_images(lambda idx: diff[idx].mean(1), len(diff), num_bootstrap, seed)
    low, high = _interval(draws)
    return ClaimResult(float(diff.mean()), low, high, bootstrap_p(draws), design='test set',
                       note=f'paired bootstrap over {len(diff)} images', draws=draws)


def _change(claim: Claim, root: str, statistic: str, num_bootstrap: int, seed: int,
            base: Claim, base_result: ClaimResult) -> ClaimResult:
    if base_result.draws is None:
        raise ValueError(f'claim {claim.id}: a change is tested on bootstrap draws; {base.test} has none')
    other = Claim(**{**base.__dict__, 'study': claim.other_study})
    other_result = RUNNERS[base.test](other, root, statistic, num_bootstrap, seed + 1)
    draws = base_result.draws - other_result.draws  # independent images in the two settings
    low, high = _interval(draws)
    patch = ('the patch size in pixels is the same in both settings' if claim.patch_px == 'same' else
             'the patch size in pixels differs between the settings: a change may come from it, not from resolution')
    return ClaimResult(base_result.estimate - other_result.estimate, low, high, bootstrap_p(draws),
                       design=base_result.design, note=f'{claim.of} in {base.study} minus in {claim.other_study}; '
                                                       + patch)


RUNNERS: Dict[str, Callable[..., ClaimResult]] = dict(middle_share=_middle_share,
                                                      middle_share_seeds=_middle_share_seeds, top1=_top1,
                                                      gradcam=_gradcam)


_VERDICTS = {'as declared': 'decided, as declared', 'against': 'decided, against the declared direction',
             'not decided': 'not decided', 'not computed': 'not computed'}
"""The outcomes a verdict can name, by key, and the words that open its text (`verdict_outcome` reads them back)."""


def _verdict(estimate: float, p_adjusted: float, claim: Claim, alpha: float, correction: str, size: int,
             missing: int = 0) -> str:
    if p_adjusted != p_adjusted:
        return _VERDICTS['not computed']
    pending = f'; {missing} not computed yet, at p = 1' if missing else ''
    scope = f'{CORRECTIONS[correction]} over {size} claims{pending}' if not claim.exploratory else 'exploratory, unadjusted'
    if p_adjusted >= alpha:
        return f'{_VERDICTS["not decided"]} ({scope})'
    as_declared = (estimate > 0) == (claim.direction == 'greater')
    return f'{_VERDICTS["as declared" if as_declared else "against"]} ({scope})'


def verdict_outcome(verdict: str) -> str:
    """The outcome a verdict written by `evaluate_registry` states: one key of ``'as declared'``, ``'against'``,
    ``'not decided'``, ``'not computed'``. A ``ValueError`` names any other text (a hand-edited ``claims.csv``).

    Args:
        verdict: a ``verdict`` cell of `evaluate_registry`'s table or of ``claims.csv``.
    """
    for key, text in _VERDICTS.items():
        if verdict == text or verdict.startswith(text + ' ('):
            return key
    raise ValueError(f'verdict {verdict!r} is not one evaluate_registry writes; accepted: it starts with one of '
                     f'{", ".join(repr(t) for t in _VERDICTS.values())}')


def claim_cells(row: Any) -> Dict[str, str]:
    """A claims-table row's printed cells: ``statistic`` (``-`` for claims that do not depend on it, with
    ``(sensitivity)`` when it is not the declared one), ``estimate``, ``interval``, ``p`` and ``p_adjusted``; a claim
    not computed yet gets dashes, never ``nan``.

    Args:
        row: a row (``itertuples``) of `evaluate_registry`'s table or of ``claims.csv``.
    """
    statistic = row.statistic if isinstance(row.statistic, str) and row.statistic else '-'
    cells = dict(statistic=statistic + ('' if bool(row.primary) else ' (sensitivity)'))
    if row.estimate != row.estimate:
        return dict(cells, estimate='-', interval='-', p='-', p_adjusted='-')
    return dict(cells, estimate=f'{row.estimate:+.3f}', interval=f'{row.low:+.3f} to {row.high:+.3f}', p=f'{row.p:.3g}',
                p_adjusted=f'{row.p_adjusted:.3g}')


def evaluate_registry(path: str, num_bootstrap: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Compute every claim a registry declares and adjust over its family.

    Interaction claims are computed under their declared (primary) statistic and under each other noise-removed
    statistic (``mean-abs`` / ``rms``) as a sensitivity check; each statistic's claims are adjusted as a family of
    the same size, so a verdict reads the same way under both. Exploratory claims (``exploratory: true``) are
    reported unadjusted and outside the family.

    Args:
        path: the registry file.
        num_bootstrap: bootstrap resamples of the images.
        seed: seed of the resampling.

    Returns:
        One row per claim and statistic, columns `CLAIM_COLUMNS` (``primary`` marks the declared statistic).
    """
    registry = load_registry(path)
    root, correction, alpha = registry['root'], registry['correction'], registry['alpha']
    root = repository_root(root)
    rows: List[Dict[str, Any]] = []
    for statistic in ('mean-abs', 'rms'):
        results: Dict[str, ClaimResult] = {}
        for claim in registry['claims']:
            interaction = claim.test in INTERACTION_TESTS
            if not interaction and statistic != 'mean-abs':
                continue  # accuracy and Grad-CAM claims do not depend on the strength statistic
            try:
                if claim.test == 'change':
                    base = next(c for c in registry['claims'] if c.id == claim.of)
                    result = _change(claim, root, statistic, num_bootstrap, seed, base, results[base.id])
                else:
                    result = RUNNERS[claim.test](claim, root, statistic, num_bootstrap, seed)
            except (ValueError, KeyError) as error:
                result = ClaimResult(*(float('nan'),) * 4, note=f'not computed: {error}')
            results[claim.id] = result
            rows.append(dict(claim_id=claim.id, estimate=result.estimate, low=result.low, high=result.high,
                             p=result.p, statistic=statistic if interaction else '', design=result.design,
                             primary=(statistic == claim.statistic) or not interaction, family=registry['family'],
                             correction=CORRECTIONS[correction], test=claim.test, df=result.df, what=claim.what,
                             note=result.note, exploratory=claim.exploratory))
    table = pd.DataFrame(rows)
    table['p_adjusted'] = np.nan
    for statistic in ('mean-abs', 'rms'):
        # each statistic's family: its interaction claims plus the claims that do not depend on the statistic
        # a claim not computed yet stays in its family with p = 1: both corrections are monotone in every p, so the
        # verdicts read now can only strengthen once it is computed, and "over N claims" stays true
        mask = ((table.statistic == statistic) | (table.statistic == '')) & ~table.exploratory
        adjust = holm if correction == 'holm' else benjamini_hochberg
        adjusted = adjust(table.loc[mask, 'p'].fillna(1.0).to_numpy()) if mask.any() else []
        if statistic == 'mean-abs':
            table.loc[mask, 'p_adjusted'] = adjusted
        else:
            only = mask & (table.statistic == statistic)
            table.loc[only, 'p_adjusted'] = np.asarray(adjusted)[(table.loc[mask, 'statistic'] == statistic).to_numpy()]
    table.loc[table.exploratory | table.p.isna(), 'p_adjusted'] = table.loc[table.exploratory | table.p.isna(), 'p']
    size = int((~table.exploratory & (table.statistic.isin(['mean-abs', '']))).sum())
    table['family_size'] = size
    claims = {c.id: c for c in registry['claims']}
    in_family = ~table.exploratory & table.statistic.isin(['mean-abs', ''])
    missing = int((in_family & table.p.isna()).sum())
    table['verdict'] = [_verdict(r.estimate, r.p_adjusted, claims[r.claim_id], alpha, correction, size, missing)
                        for r in table.itertuples()]
    return table[CLAIM_COLUMNS]


def repository_root(folder: str) -> str:
    """Study paths in a registry are relative to the repository: the nearest folder above the registry holding
    ``mkdocs.yml`` or ``.git`` (else the registry's own folder)."""
    here = folder
    while True:
        if any(os.path.exists(os.path.join(here, marker)) for marker in ('.git', 'mkdocs.yml')):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return folder
        here = parent


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table in Markdown: claim, statistic, estimate with its interval, adjusted p, verdict.

    Args:
        table: from `evaluate_registry`.
    """
    lines = ['| claim | statistic | estimate (95 % interval) | p | p adjusted | verdict |', '|---|---|---|---|---|---|']
    for r in table.itertuples():
        c = claim_cells(r)
        estimate = '-' if c['estimate'] == '-' else f'{c["estimate"]} ({c["interval"]})'
        lines.append(f'| {r.claim_id}: {r.what} | {c["statistic"]} | {estimate} | {c["p"]} | {c["p_adjusted"]} | '
                     f'{r.verdict} |')
    return '\n'.join(lines) + '\n'


FINDINGS_START = '<!-- findings: generated by `moga-claims --registry REGISTRY --readme FILE`; do not edit -->'
FINDINGS_END = '<!-- end of findings -->'
_SETTINGS = {'middle_share': 'middle-order share, paired over images', 'middle_share_seeds':
             'middle-order share, across training seeds', 'top1': 'test top-1', 'gradcam': 'Grad-CAM mass on the object',
             'change': 'difference of effects'}


def findings_markdown(table: pd.DataFrame, link: str = 'docs/paper.md') -> str:
    """The README's findings table from `evaluate_registry`'s rows under each claim's declared statistic: claim,
    setting, result (estimate and 95 % interval) and verdict; exploratory claims are marked and the claims page is
    linked. Claims whose study has no data yet read "not computed yet"."""
    rows = table[table.primary.astype(bool)]
    lines = [f'| claim | setting | result (95 % interval) | verdict ([all claims]({link})) |', '|---|---|---|---|']
    for r in rows.itertuples():
        setting = _SETTINGS.get(r.test, r.test) + (f', {r.statistic}' if r.statistic else '')
        result = ('not computed yet' if r.estimate != r.estimate
                  else f'{r.estimate:+.3f} ({r.low:+.3f} to {r.high:+.3f})')
        verdict = '-' if r.verdict == 'not computed' else r.verdict
        lines.append(f'| {r.what}{" (exploratory)" if r.exploratory else ""} | {setting} | {result} | {verdict} |')
    return '\n'.join(lines) + '\n\n' + findings_summary(table) + '\n'


def findings_summary(table: pd.DataFrame) -> str:
    """One sentence under the findings table: how many of the family's claims (declared statistic) are decided as
    declared, decided against, not decided or not computed yet, each group naming its claims by id.

    Args:
        table: from `evaluate_registry` (its ``primary``, ``exploratory``, ``verdict``, ``claim_id`` and
            ``correction`` columns).
    """
    rows = table[table.primary.astype(bool) & ~table.exploratory.astype(bool)]
    names = {'as declared': 'decided as declared', 'against': 'decided against the declared direction',
             'not decided': 'not decided', 'not computed': 'not computed yet'}
    groups: Dict[str, List[str]] = {name: [] for name in names.values()}
    for r in rows.itertuples():
        groups[names[verdict_outcome(r.verdict)]].append(f'`{r.claim_id}`')
    size = len(rows)
    if len(groups['not computed yet']) == size:
        return f'None of the {size} declared claims is computed yet: their studies are not published.'
    parts = [f'{len(ids)} {name} ({", ".join(ids)})' for name, ids in groups.items() if ids]
    pending = (' The claims not computed yet count at p = 1 until they are, so a "not decided" may still turn '
               'decided; a "decided" stays.' if groups['not computed yet'] else '')
    return (f'Of the {size} declared claims, adjusted together ({rows.correction.iloc[0]}): ' + '; '.join(parts)
            + '. Exploratory rows are outside this count.' + pending)


def replace_findings(text: str, table_markdown: str) -> str:
    """``text`` (a README) with the block between `FINDINGS_START` and `FINDINGS_END` replaced by the table.

    Raises:
        ValueError: the markers are missing.
    """
    if FINDINGS_START not in text or FINDINGS_END not in text:
        raise ValueError('the file has no findings block; add the two marker lines '
                         f'{FINDINGS_START!r} and {FINDINGS_END!r} where the table goes')
    return _replace_block(text, FINDINGS_START, FINDINGS_END, table_markdown)


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    """``text`` with what lies between the marker lines ``start`` and ``end`` replaced by ``body``."""
    head, rest = text.split(start, 1)
    return head + start + '\n' + body + rest[rest.index(end):]


REPORT_CLAIMS_START = '<!-- claims: generated from claims.csv whenever the claims are evaluated; do not edit -->'
REPORT_CLAIMS_END = '<!-- end of claims -->'


def report_claims_section(claims: pd.DataFrame) -> str:
    """A study report's "Declared claims" section: that study's rows of the family's table, as evaluated last. The
    report puts it between the marker lines `REPORT_CLAIMS_START` and `REPORT_CLAIMS_END`, and `evaluate_declared`
    rewrites it there in every published report, so a report never shows adjusted p-values from before another study
    of the family was published.

    Args:
        claims: one study's rows of `evaluate_registry`'s table (its ``claims.csv``).
    """
    rows = ['## Declared claims', '',
            f'Declared before their data and adjusted over their family ({claims.correction.iloc[0]} over '
            f'{int(claims.family_size.iloc[0])} claims; exploratory claims outside it); ``claims.csv`` holds every '
            'number, the verdicts under the other statistic included.', '',
            '| claim | statistic | estimate | 95 % interval | p | p adjusted | verdict |',
            '| --- | --- | ---: | --- | ---: | ---: | --- |']
    for r in claims.itertuples():
        c = claim_cells(r)
        rows.append(f'| {r.claim_id} | {c["statistic"]} | {c["estimate"]} | {c["interval"]} | {c["p"]} | '
                    f'{c["p_adjusted"]} | {r.verdict} |')
    return '\n'.join(rows) + '\n'


def _refresh_report_claims(folder: str, claims: pd.DataFrame) -> None:
    path = os.path.join(folder, 'report.md')
    if not os.path.isfile(path):
        return
    with open(path) as f:
        text = f.read()
    if REPORT_CLAIMS_START in text and REPORT_CLAIMS_END in text:  # (a report rendered before the markers: as it is)
        from moga_lab.utils.atomic import atomic_write_text
        atomic_write_text(path, _replace_block(text, REPORT_CLAIMS_START, REPORT_CLAIMS_END,
                                               report_claims_section(claims)))


def evaluate_declared(registry: str, out: Optional[str] = None, readme: Sequence[str] = ()) -> pd.DataFrame:
    """Every claim of a registry, adjusted over its family (`evaluate_registry`), written where readers look.

    Writes ``claims.csv`` and ``claims.md`` in ``out`` (every claim), ``claims.csv`` in each study folder the
    registry names (that study's claims, so a published study carries the verdicts it re-derives) with the claims
    section of its ``report.md`` (`report_claims_section`), and regenerates the findings table of each file in
    ``readme`` from the same rows.

    Args:
        registry: the registry file.
        out: the folder of the family's ``claims.csv`` and ``claims.md`` (None: not written).
        readme: Markdown files holding a findings table between `FINDINGS_START` and `FINDINGS_END`.

    Returns:
        `evaluate_registry`'s table; its ``attrs['markdown']`` holds ``claims.md``'s text.
    """
    from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text
    table = evaluate_registry(registry)
    declared = load_registry(registry)
    root = repository_root(declared['root'])
    for path in readme or ():
        with open(path) as f:
            text = f.read()
        link = os.path.relpath(os.path.join(root, 'docs', 'paper.md'), os.path.dirname(os.path.abspath(path)))
        atomic_write_text(path, replace_findings(text, findings_markdown(table, link)))
    studies: Dict[str, List[str]] = {}
    for claim in declared['claims']:
        studies.setdefault(claim.study or '', []).append(claim.id)
    for study, ids in studies.items():
        folder = os.path.join(root, study)
        if study and os.path.isdir(folder):
            atomic_write_csv(os.path.join(folder, 'claims.csv'), table[table.claim_id.isin(ids)])
            _refresh_report_claims(folder, table[table.claim_id.isin(ids)].reset_index(drop=True))
    text = (f'Claims declared in `{os.path.relpath(registry)}` before their data, each adjusted over its family '
            f'({table.correction.iloc[0]} over {int(table.family_size.iloc[0])} claims); rows marked (sensitivity) '
            'give the verdict under the other noise-removed statistic.\n\n' + claims_markdown(table))
    if out:
        os.makedirs(out, exist_ok=True)
        atomic_write_csv(os.path.join(out, 'claims.csv'), table)
        atomic_write_text(os.path.join(out, 'claims.md'), text)
    table.attrs['markdown'] = text
    return table
