"""The claims registry: hypotheses declared before their data exist, each with its test, pairing, alternative and
statistic, read and checked here (`load_registry`); `moga_lab.studies.claims` computes them.

Registry layout::

    family: compare28              # the family the claims are adjusted in
    correction: holm               # or bh
    alpha: 0.05
    claims:
      - id: moga_above_convnext_middle
        what: MogaNet-XT has a larger middle-order share than ConvNeXt-atto
        why: the paper's Fig. 3
        test: middle_share_seeds     # middle_share | middle_share_seeds | top1 | gradcam | change
        study: docs/studies/compare  # a folder of the published study (relative to the repository)
        a: moganet_xtiny
        b: convnext_atto
        statistic: mean-abs          # interaction tests: the primary statistic (mean-abs or rms)
        direction: greater           # the sign declared for a - b
        pairing: seed                # seed: seed k of a with seed k of b; none: the seeds as independent groups
        alternative: two-sided       # two-sided | greater | less (a one-sided one must agree with direction)
      - id: moga_gradcam
        test: gradcam
        zero_maps: drop              # gradcam: how all-zero maps count: drop | uniform | zero
        ...
      - id: resolution_changes_the_gap
        test: change                 # (a - b at setting 1) - (a - b at setting 2): the difference of the effects
        of: moga_above_convnext_middle
        other_study: docs/studies/compare56
        patch_px: same               # same | differs: whether the two settings keep the patch size in pixels

A claim may be ``exploratory: true`` (outside the family: estimate, interval and unadjusted p, no verdict) or
``sensitivity: true`` (a re-analysis of a declared claim under another setting: estimate and interval only). Any
other key (``caveat``: a sentence every row of the claim carries; ``test_images`` for top-1) is kept in
``Claim.extra``.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

from moga_lab.analysis.seeds import PAIRINGS
from moga_lab.analysis.uncertainty import ALTERNATIVES
from moga_lab.utils.schema import check_choice, check_mapping

__all__ = ['Claim', 'load_registry', 'TESTS', 'INTERACTION_TESTS', 'CORRECTIONS', 'DIRECTIONS', 'PRIMARY_STATISTICS',
           'ZERO_MAPS', 'PAIRINGS', 'ALTERNATIVES']

TESTS = ('middle_share', 'middle_share_seeds', 'top1', 'gradcam', 'change')
"""The tests a claim can name: the middle-share difference of one checkpoint each (over images) or across training
seeds (over seeds and images), top-1 (over seeds and the test images), the Grad-CAM mass on the object (over images,
and seeds where the study has them), and the change of an effect between two settings (difference of the effects)."""
INTERACTION_TESTS = ('middle_share', 'middle_share_seeds', 'change')
"""The tests that depend on the strength statistic (a claim of one of them names its primary statistic)."""
CORRECTIONS = {'holm': 'Holm', 'bh': 'Benjamini-Hochberg'}
"""Family-wise adjustments a registry can name (Holm: family-wise error; Benjamini-Hochberg: false discovery rate)."""
DIRECTIONS = ('greater', 'less')
"""The signs a claim can declare for a - b."""
PRIMARY_STATISTICS = ('mean-abs', 'rms')
"""The statistics an interaction claim can declare as primary (the naive one is biased by the noise)."""
ZERO_MAPS = ('drop', 'uniform', 'zero')
"""How a Grad-CAM claim counts an all-zero map (no location supports the class): ``drop`` the image from that pair
of models, count it as an evenly spread map (``uniform``: its mass on the object is the object's area), or as no mass
on the object (``zero``)."""


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
        statistic: ``mean-abs`` or ``rms`` (interaction tests: the primary statistic).
        direction: ``greater`` or ``less``: the sign the claim declares for a minus b.
        pairing: one of `PAIRINGS`.
        alternative: one of `ALTERNATIVES`.
        zero_maps: ``gradcam`` only: one of `ZERO_MAPS`.
        of: ``change`` only: the claim whose effect changes.
        other_study: ``change`` only: the study of the other setting.
        patch_px: ``change`` only: ``same`` or ``differs``, whether the settings keep the patch size in pixels.
        exploratory: outside the family: estimate, interval and unadjusted p, no verdict.
        sensitivity: a sensitivity re-analysis: estimate and interval only.
        extra: the entry's other keys (``caveat``, ``test_images``), kept for the test that reads them.
    """
    id: str
    test: str
    what: str = ''
    why: str = ''
    study: str = ''
    a: str = ''
    b: str = ''
    statistic: str = ''
    direction: str = 'greater'
    pairing: str = ''
    alternative: str = ''
    zero_maps: str = ''
    of: str = ''
    other_study: str = ''
    patch_px: str = ''
    exploratory: bool = False
    sensitivity: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        """``claim`` (in the family), ``exploratory`` or ``sensitivity``."""
        return 'sensitivity' if self.sensitivity else 'exploratory' if self.exploratory else 'claim'


def _choice(path: str, cid: str, name: str, value: Any, accepted) -> None:
    check_choice(value, f'{path}: claim {cid}', name, accepted)


def _check(path: str, claim: Claim, seen: Dict[str, Claim]) -> None:
    cid = claim.id
    _choice(path, cid, 'test', claim.test, TESTS)
    _choice(path, cid, 'direction', claim.direction, DIRECTIONS)
    if claim.test == 'change':
        if claim.of not in seen:
            raise ValueError(f'{path}: claim {cid} changes claim {claim.of!r}, which is not declared before it')
        _choice(path, cid, 'patch_px', claim.patch_px, ('same', 'differs'))
    _choice(path, cid, 'pairing', claim.pairing, PAIRINGS)
    _choice(path, cid, 'alternative', claim.alternative, ALTERNATIVES)
    if claim.alternative != 'two-sided' and claim.alternative != claim.direction:
        raise ValueError(f'{path}: claim {cid}: alternative {claim.alternative!r} disagrees with direction '
                         f'{claim.direction!r}; accepted: two-sided, or the declared direction')
    if claim.test in INTERACTION_TESTS:
        _choice(path, cid, 'statistic', claim.statistic, PRIMARY_STATISTICS)
    elif claim.statistic:
        raise ValueError(f'{path}: claim {cid}: statistic {claim.statistic!r} is given for a {claim.test} test; '
                         f'accepted: a statistic only for {", ".join(INTERACTION_TESTS)}')
    if claim.test == 'gradcam':
        _choice(path, cid, 'zero_maps', claim.zero_maps, ZERO_MAPS)
    if claim.exploratory and claim.sensitivity:
        raise ValueError(f'{path}: claim {cid} is both exploratory and sensitivity; accepted: one of them')


def load_registry(path: str) -> Dict[str, Any]:
    """Read and check a registry file: ``{family, correction, alpha, claims: [Claim, ...], root}``.

    Args:
        path: the registry (YAML).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing or unknown field, test, statistic, pairing, alternative, direction, zero-map rule or
            correction, a repeated id, or a ``change`` claim naming a claim that is not declared before it; the
            message names the value and what is accepted.
    """
    import yaml
    if not os.path.isfile(path):
        raise FileNotFoundError(f'claims registry {path!r} does not exist')
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    check_mapping(raw, path, ('family', 'correction', 'alpha', 'claims'), required=('family', 'claims'))
    correction = check_choice(str(raw.get('correction', 'holm')).lower(), path, 'correction', list(CORRECTIONS))
    known = {f for f in Claim.__dataclass_fields__ if f != 'extra'}
    claims: List[Claim] = []
    seen: Dict[str, Claim] = {}
    for entry in raw['claims']:
        entry = dict(entry)
        cid = entry.get('id')
        if not cid or cid in seen:
            raise ValueError(f'{path}: every claim needs an id of its own; got {cid!r}')
        if entry.get('test') == 'change' and entry.get('of') in seen:   # the changed claim's rule, unless restated
            base = seen[entry['of']]
            entry = {**{k: getattr(base, k) for k in ('statistic', 'direction', 'pairing', 'alternative')}, **entry}
        claim = Claim(**{k: v for k, v in entry.items() if k in known},
                      extra={k: v for k, v in entry.items() if k not in known})
        _check(path, claim, seen)
        seen[cid] = claim
        claims.append(claim)
    return dict(family=str(raw['family']), correction=correction, alpha=float(raw.get('alpha', 0.05)),
                claims=claims, root=os.path.dirname(os.path.abspath(path)))
