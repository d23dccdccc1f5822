"""What a published study can decide: each declared claim's decidable effect at 80 % power under the family's
correction, and the seeds and images a study would need to decide a stated difference (``moga-claims power``).

Each claim is fitted on its study's published tables exactly as `moga_lab.studies.claims.evaluate_registry` computes
it; its variance components (`moga_lab.analysis.power.components_of`) then give the standard error and degrees of
freedom of other designs. Holm's first step tests at alpha / m and its last at alpha: the decidable effect at the
first is what a claim is sure to need, at the last what it needs if every other claim is decided before it.
"""
from typing import Dict, Optional, Sequence

import pandas as pd

from moga_lab.analysis.power import components_of, decidable_effect, design_for, planned_se, power_of
from moga_lab.studies.claims import RUNNERS, TableError, load_registry, repository_root

__all__ = ['claims_power', 'POWER_IMAGES']


def _side(alternative: str) -> str:
    return 'two-sided' if alternative == 'two-sided' else 'greater'


POWER_IMAGES = (32, 64, 128, 256)
"""The images per seed the planning table tries."""


def claims_power(registry: str, differences: Optional[Dict[str, float]] = None, power: float = 0.8,
                 images: Sequence[int] = POWER_IMAGES) -> pd.DataFrame:
    """The power table of a registry's family, from its studies' published tables.

    Args:
        registry: the registry file.
        differences: ``{claim id: the difference to decide}``; a claim not named is planned for the size of its own
            estimate.
        power: the wanted power.
        images: images per seed tried in the planning columns.

    Returns:
        One row per family claim (its declared statistic): ``claim_id, test, statistic, estimate, se, df, seeds,
        images, layout``, the components (``var_seed, var_image, var_interaction, var_extra``),
        ``decidable_first`` (at alpha / m), ``decidable_last`` (at alpha), ``difference``, and what deciding
        ``difference`` with ``power`` at alpha / m needs: per entry of ``images``, ``seeds_for_<n>_images`` (seeds
        and images crossed), ``seeds_needed`` (a fixed test set, or images nested in seeds) or ``images_needed`` (one
        seed: the seed term unknown); empty where more than 40 seeds or 4096 images are needed. A claim not
        computable yet has only its id and a note.
    """
    declared = load_registry(registry)
    root, alpha = repository_root(declared['root']), declared['alpha']
    family = [c for c in declared['claims'] if c.role == 'claim']
    m = len(family)
    differences = dict(differences or {})
    unknown = set(differences) - {c.id for c in family}
    if unknown:
        raise ValueError(f'--difference names {", ".join(sorted(unknown))}, not a claim of the family; accepted: '
                         + ', '.join(c.id for c in family))
    rows = []
    for claim in family:
        if claim.test == 'change':
            rows.append(dict(claim_id=claim.id, test=claim.test, note='a change of two effects: plan each setting'))
            continue
        try:
            result = RUNNERS[claim.test](claim, root, claim.statistic)
        except TableError:
            raise
        except (ValueError, KeyError) as error:
            rows.append(dict(claim_id=claim.id, test=claim.test, note=f'not computed: {error}'))
            continue
        iv = result.interval
        comp = components_of(iv)
        difference = abs(differences.get(claim.id, iv.estimate))
        row = dict(claim_id=claim.id, test=claim.test, statistic=claim.statistic or '', estimate=iv.estimate,
                   se=iv.se, df=iv.df, seeds=iv.num_seeds, images=iv.num_images, layout=iv.layout,
                   var_seed=comp.seed, var_image=comp.image, var_interaction=comp.interaction, var_extra=comp.extra,
                   decidable_first=decidable_effect(iv.se, iv.df, alpha / m, power, claim.alternative),
                   decidable_last=decidable_effect(iv.se, iv.df, alpha, power, claim.alternative),
                   difference=difference, note='')
        if iv.layout == 'crossed':
            plan = design_for(difference, comp, alpha / m, power, claim.alternative, images=tuple(images))
            row.update({f'seeds_for_{n}_images': plan[n] for n in images})
        elif iv.layout == 'images':   # one seed: how many images, the seed term left out (unknown)
            grid = [n for n in (32, 64, 128, 256, 512, 1024, 2048, 4096)]
            row['images_needed'] = next((n for n in grid if power_of(difference, *planned_se(comp, 1, n), alpha / m,
                                                                     _side(claim.alternative)) >= power), None)
            row['note'] = 'one training seed: the seed term is unknown, so images are planned for this checkpoint only'
        else:
            plan = design_for(difference, comp, alpha / m, power, claim.alternative, images=(iv.num_images,))
            row['seeds_needed'] = plan[iv.num_images]
            row['note'] = ('the test set is fixed: seeds are planned with its binomial term as it is' if comp.extra
                           else 'images nested in seeds: planned over seeds')
        rows.append(row)
    return pd.DataFrame(rows)
