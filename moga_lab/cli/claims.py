"""The paper's claims, one by one, against the published study artefacts: the numbers and whether the data decide.

    python analysis/paper_claims.py --registry experiments/claims/paper.yaml --out docs/studies

``--registry`` evaluates the claims a registry declared before the studies ran, adjusted over their family
(`moga_lab.studies.claims`): that is the verdict. The ``--compare`` / ``--ablation`` reading below is exploratory:
claims written after the data, each with its bare interval.

    python analysis/paper_claims.py --compare docs/studies/compare --ablation docs/studies/ablation \
        [--compare docs/studies/compare56 --ablation docs/studies/ablation56] [--out docs/studies/claims.md]

Each ``--compare`` / ``--ablation`` folder is what ``analysis/compare_models.py`` / ``experiments/ablate.py`` publish
(``accuracy.csv``: first column the model or row, a ``seed`` column, test top-1 in percent in a ``*top1*`` column;
``interaction.csv``: the tidy per-image table with ``model`` and ``image_id``). Give them in pairs of the same
resolution; the resolution is read from the folder's report (``NN px``) or else taken in the order given.

Claims and how each is decided (95 % intervals; "decided" means the interval excludes 0):

* MogaNet's interactions sit more in the middle orders than ConvNeXt's / Swin's: the middle-share difference on
  the same images, paired bootstrap over images (``moga_lab.analysis.games.middle_share_difference``).
* Gating raises middle-order interactions; channel aggregation (CA) raises them: ``full`` minus ``no_gating`` /
  ``no_ca`` (and ``plain``) in the ablation, the same paired bootstrap; where the grid published curves on several
  seeds' checkpoints (``interaction_seeds.csv``, ``ablate.py --curve-seeds``), also across training seeds: the
  difference on each seed's checkpoints and Welch's interval over the seeds' shares. The grid's other switches (sigmoid gate,
  dilations 1-1-1, split 1:0:0, no FD) get the same row, without "as the paper says": the paper's interaction
  ablation does not cover them.
* Each component raises accuracy: ``full`` minus every row in mean test top-1 over seeds, Welch's t interval (with a
  single seed on either side there is no interval: "one seed, not decided").
* Where the comparison's MogaNet is the grid's full row on its first seed (the 3-epoch comparison) and the grid has
  the full row's curves on other seeds: MogaNet's larger middle share on each of its training seeds, each seed's
  curves paired with the baseline's over the images (the baselines have one seed each there).
* Where the comparison published curves on several training seeds of MogaNet and a baseline
  (``interaction_seeds.csv``, ``compare_models.py --train-seeds``): MogaNet's larger middle share across training
  seeds, as for the grid (per seed paired over the images; Welch over the seeds' shares). It supersedes the
  per-MogaNet-seed claim when every compared model has several seeds.
* MogaNet is more accurate than ConvNeXt / Swin of similar size: with several seeds of both, Welch's interval over
  the seeds' top-1; with one seed, the top-1 difference on the 10k test images with a binomial interval (unpaired,
  so conservative for the same images; it does not cover seed-to-seed variation, which one seed per model cannot
  measure: the evidence says so).
* MogaNet's Grad-CAM puts more of its mass on the object than ConvNeXt's / Swin's (where the comparison published
  ``gradcam.csv``): the paired difference of the per-image shares, bootstrap over images
  (``moga_lab.analysis.gradcam.mass_summary``).
* With two resolutions: whether each verdict is the same at both, decided at one only, or reversed.
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd


from moga_lab.analysis.games import middle_share_difference
from moga_lab.analysis.gradcam import mass_summary
from moga_lab.analysis.seeds import middle_share_difference_over_seeds, welch
from moga_lab.analysis.strength import Z95
from moga_lab.cli.common import Parser
from moga_lab.utils.atomic import atomic_write_text

TEST_IMAGES = 10_000  # Fashion-MNIST's test set
# (ablation row, what full has and the row lacks, whether the paper claims it raises middle-order interactions: its
# interaction ablation covers gating and CA; the other switches are reported too, without "as the paper says")
INTERACTION_ROWS = (('no_gating', 'Gating', True), ('no_ca', 'Channel aggregation', True),
                    ('plain', 'Gating + FD + CA', True), ('gate_sigmoid', 'The SiLU gate (vs sigmoid)', False),
                    ('dilations_1-1-1', 'Multi-order dilations (1,2,3 vs 1,1,1)', False),
                    ('split_1-0-0', 'The multi-order channel split (1:3:4 vs 1:0:0)', False),
                    ('no_fd', 'Feature decomposition', False))


def read_study(folder: str):
    """(accuracy, interaction, resolution or None, Grad-CAM table or None) of a published study folder; ValueError
    naming what is missing. The Grad-CAM table is ``gradcam.csv`` (per model and image: the share of the map's mass
    on the object), which comparisons published since 2026-11-27 hold."""
    files = {n: os.path.join(folder, n) for n in ('accuracy.csv', 'interaction.csv')}
    missing = [n for n, p in files.items() if not os.path.isfile(p)]
    if missing:
        raise ValueError(f'{folder}: missing {", ".join(missing)} (publish the study there with --publish)')
    accuracy = pd.read_csv(files['accuracy.csv'])
    top1 = [c for c in accuracy.columns if 'top1' in c and 'mean' not in c]
    if 'seed' not in accuracy.columns or not top1:
        raise ValueError(f'{files["accuracy.csv"]}: needs a seed column and a *top1* column; has {list(accuracy.columns)}')
    accuracy = pd.DataFrame({'name': accuracy.iloc[:, 0].astype(str), 'seed': accuracy.seed,
                             'top1': accuracy[top1[0]].astype(float)})
    interaction = pd.read_csv(files['interaction.csv'])
    resolution = None
    for report in ('report.md', 'ablation.md'):
        path = os.path.join(folder, report)
        if os.path.isfile(path):
            found = re.search(r'(\d+) px', open(path).read())
            resolution = int(found.group(1)) if found else None
    cams = os.path.join(folder, 'gradcam.csv')
    return accuracy, interaction, resolution, pd.read_csv(cams) if os.path.isfile(cams) else None


def verdict(low: float, high: float, positive: str, negative: str) -> str:
    if low > 0:
        return f'decided: {positive}'
    if high < 0:
        return f'decided: {negative}'
    return 'not decided (the interval contains 0)'


def compare_claims(accuracy, interaction, px, cams=None, seeded=None):
    """The comparison's claims; with ``seeded`` (its ``interaction_seeds.csv``: curves on several training seeds of
    MogaNet and a baseline) also MogaNet's larger middle share across training seeds, and the accuracy claim from the
    seeds (Welch) when both models have several."""
    rows = []
    names = list(dict.fromkeys(accuracy.name))
    moga = next((n for n in names if n.startswith('moganet')), None)
    if moga is None:
        return rows
    peers = [n for n in names if n != moga]
    if cams is not None:
        _, diffs, area, n = mass_summary(cams, [moga] + peers)
        for peer, (d, low, high) in diffs.items():
            rows.append(dict(px=px, claim=f'MogaNet\'s Grad-CAM puts more of its mass on the object than {peer}\'s',
                             evidence=f'{moga} - {peer}: {d:+.3f} ({low:+.3f} to {high:+.3f}), {n} images (an evenly '
                                      f'spread map: {area:.3f})',
                             status=verdict(low, high, 'MogaNet more on the object (as the paper\'s Grad-CAM shows)',
                                            'MogaNet less on the object (against the paper)')
                             if n >= 2 else 'not measured (fewer than 2 images with a non-zero map)'))
    first = int(accuracy[accuracy.name == moga].seed.iloc[0])  # the compared runs' seed: compare_models lists it first
    for peer in peers:
        d = middle_share_difference(interaction, moga, peer, 'rms')
        rows.append(dict(px=px, claim=f'MogaNet has a larger middle-order share than {peer} on the seed-{first} checkpoints',
                         evidence=f'{moga} - {peer}: {d["difference"]:+.3f} ({d["ci_low"]:+.3f} to {d["ci_high"]:+.3f}), '
                                  f'{d["num_images"]} images',
                         status=verdict(d['ci_low'], d['ci_high'], 'MogaNet higher (as the paper says)',
                                        'MogaNet lower (against the paper)')))
        if seeded is not None and all(seeded[seeded.model == n].seed.nunique() > 1 for n in (moga, peer)):
            rows.append(_across_seeds(seeded, moga, peer, f'MogaNet has a larger middle-order share than {peer} across '
                                      'training seeds (both models)', px, 'MogaNet higher (as the paper says)',
                                      'MogaNet lower (against the paper)'))
        ours, theirs = (accuracy[accuracy.name == n].top1.to_numpy() for n in (moga, peer))
        if len(ours) > 1 and len(theirs) > 1:  # seed-to-seed variation measured: Welch over the seeds
            diff, low, high = welch(ours, theirs)
            rows.append(dict(px=px, claim=f'MogaNet is more accurate than {peer}',
                             evidence=f'top-1 {ours.mean():.2f} vs {theirs.mean():.2f} % ({len(ours)} / {len(theirs)} '
                                      f'seeds): {diff:+.2f} ({low:+.2f} to {high:+.2f}, Welch over the seeds)',
                             status=verdict(low, high, 'MogaNet more accurate', 'MogaNet less accurate')))
            continue
        a = accuracy[accuracy.name == moga].top1.mean() / 100
        b = accuracy[accuracy.name == peer].top1.mean() / 100
        se = np.sqrt(a * (1 - a) / TEST_IMAGES + b * (1 - b) / TEST_IMAGES) * 100
        diff = (a - b) * 100
        seeds = f'{len(ours)} / {len(theirs)} seeds' if len(ours) + len(theirs) > 2 else 'one seed each'
        rows.append(dict(px=px, claim=f'MogaNet is more accurate than {peer}',
                         evidence=f'top-1 {100 * a:.2f} vs {100 * b:.2f} %: {diff:+.2f} ({diff - Z95 * se:+.2f} to '
                                  f'{diff + Z95 * se:+.2f}, test-set sampling only, {seeds}: seed-to-seed variation '
                                  'not covered)',
                         status=verdict(diff - Z95 * se, diff + Z95 * se, 'MogaNet more accurate',
                                        'MogaNet less accurate')))
    return rows


def read_seeded(folder: str):
    """The per-image table with a seed column that a grid publishes when it has curves on several seeds' checkpoints
    (``interaction_seeds.csv``), or None."""
    path = os.path.join(folder, 'interaction_seeds.csv')
    return pd.read_csv(path) if os.path.isfile(path) else None


def ablation_claims(accuracy, interaction, px, seeded=None):
    rows = []
    names = list(dict.fromkeys(accuracy.name))
    if 'full' not in names:
        return rows
    # a grid's curves are on its first seed's checkpoints, the first the grid lists (ablate.py writes accuracy.csv in
    # the config's seed order); with seed curves published, the seed whose curves are interaction.csv's says so
    first = _curve_seed(interaction, seeded, 'full')
    first = int(accuracy[accuracy.name == 'full'].seed.iloc[0]) if first is None else first
    for row, what, papers in INTERACTION_ROWS:
        if row not in set(interaction.model):
            continue
        d = middle_share_difference(interaction, 'full', row, 'rms')
        positive, negative = ('raises (as the paper says)', 'lowers (against the paper)') if papers else ('raises', 'lowers')
        rows.append(dict(px=px, claim=f'{what} raises middle-order interactions on the seed-{first} checkpoints (full vs {row})',
                         evidence=f'full - {row}: {d["difference"]:+.3f} ({d["ci_low"]:+.3f} to {d["ci_high"]:+.3f}), '
                                  f'{d["num_images"]} images',
                         status=verdict(d['ci_low'], d['ci_high'], positive, negative)))
        if seeded is not None and {'full', row} <= set(seeded.model):
            rows.append(_across_seeds(seeded, 'full', row, f'{what} raises middle-order interactions across training '
                                      f'seeds (full vs {row})', px, positive, negative))
    full = accuracy[accuracy.name == 'full'].top1.to_numpy()
    for row in names:
        if row == 'full':
            continue
        other = accuracy[accuracy.name == row].top1.to_numpy()
        diff, low, high = welch(full, other)
        evidence = (f'full {full.mean():.2f} vs {row} {other.mean():.2f} % ({len(full)} / {len(other)} seeds): '
                    f'{diff:+.2f}')
        if low == low:
            evidence += f' ({low:+.2f} to {high:+.2f}, Welch)'
            status = verdict(low, high, 'full more accurate', f'{row} more accurate')
        else:
            status = 'one seed, not decided'
        rows.append(dict(px=px, claim=f'The full model is more accurate than {row}', evidence=evidence, status=status))
    return rows


def _across_seeds(seeded, a, b, claim, px, positive, negative):
    """``claim``: ``a``'s middle share minus ``b``'s on each seed's checkpoints (paired over the images) and across
    seeds (Welch over the seeds' shares)."""
    d = middle_share_difference_over_seeds(seeded, a, b, statistic='rms')
    per_seed = d['per_seed']
    higher = sum(v['ci_low'] > 0 for v in per_seed.values())
    lower = sum(v['ci_high'] < 0 for v in per_seed.values())
    evidence = ('per seed ' + ' / '.join(f"{s}: {v['difference']:+.3f} ({v['ci_low']:+.3f} to {v['ci_high']:+.3f})"
                                         for s, v in per_seed.items())
                + f' (decided: higher on {higher} of {len(per_seed)} seeds, lower on {lower}); mean over seeds '
                  f'{d["difference"]:+.3f}')
    if d['ci_low'] == d['ci_low']:
        evidence += f' ({d["ci_low"]:+.3f} to {d["ci_high"]:+.3f}, Welch, {len(d["seeds_a"])} / {len(d["seeds_b"])} seeds)'
        status = verdict(d['ci_low'], d['ci_high'], positive, negative)
    else:
        status = 'one seed on a side, not decided'
    return dict(px=px, claim=claim, evidence=evidence, status=status)


def _curve_seed(interaction, seeded, name):
    """The seed of ``seeded``'s 'full' curves whose per-image strengths are ``interaction``'s curves of ``name``
    (the same checkpoint, images, pairs and design), or None."""
    if seeded is None or 'full' not in set(seeded.model) or not {'I2', 'ratio'} <= set(interaction.columns):
        return None
    key = ['image_id', 'ratio']
    ours = interaction[interaction.model == name].set_index(key).I2.sort_index()
    full = seeded[seeded.model == 'full']
    for seed in sorted(full.seed.unique()):
        grid = full[full.seed == seed].set_index(key).I2.sort_index()
        if len(ours) == len(grid) and ours.index.equals(grid.index) and np.allclose(ours, grid, rtol=1e-9, atol=0):
            return int(seed)
    return None


def moga_seed_claims(interaction, seeded, px):
    """MogaNet against each baseline on every training seed of MogaNet, when the comparison's MogaNet is the grid's
    full row on its first seed (the same per-image strengths: the same checkpoint, images, pairs and design, as in the
    3-epoch comparison that shares the grid's full run) and the grid has the full row's curves on other seeds
    (``interaction_seeds.csv``). Each seed's curves are paired with the baseline's over the same images; the
    baselines' own seed variation stays uncovered (one seed each)."""
    names = list(dict.fromkeys(interaction.model))
    moga = next((n for n in names if n.startswith('moganet')), None)
    # (no match: another checkpoint or design than any of the grid's full curves, or a table without the debiased
    # columns: no per-seed pairing)
    first = None if moga is None else _curve_seed(interaction, seeded, moga)
    if first is None:
        return []
    full = seeded[seeded.model == 'full']
    seeds = sorted(int(s) for s in full.seed.unique())
    if len(seeds) < 2:
        return []
    rows = []
    for peer in (n for n in names if n != moga):
        per_seed = {}
        for seed in seeds:
            table = pd.concat([interaction[interaction.model == peer],
                               full[full.seed == seed].drop(columns='seed').assign(model=moga)], ignore_index=True)
            per_seed[seed] = middle_share_difference(table, moga, peer, 'rms')
        higher = [s for s, d in per_seed.items() if d['ci_low'] > 0]
        lower = [s for s, d in per_seed.items() if d['ci_high'] < 0]
        cells = ' / '.join(f"{s}: {d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})"
                           for s, d in per_seed.items())
        evidence = (f'{moga} - {peer} with MogaNet on seed {cells} (the baseline on one seed; paired over '
                    f'{per_seed[first]["num_images"]} images)')
        if len(higher) == len(seeds):
            status = "decided on every MogaNet seed: MogaNet higher (the baseline's seed variation not covered)"
        elif lower and not higher:
            status = f'decided lower on {len(lower)} of {len(seeds)} MogaNet seeds (against the paper)'
        else:
            status = (f'decided higher on {len(higher)} of {len(seeds)} MogaNet seeds, lower on {len(lower)}: '
                      f'not decided on every seed')
        rows.append(dict(px=px, claim=f"MogaNet has a larger middle-order share than {peer} on each of MogaNet's "
                                      f'training seeds', evidence=evidence, status=status))
    return rows


def _is_decided(status: str) -> bool:
    """A verdict the data decide as a whole ("decided on 2 of 3 seeds" is not)."""
    return status.startswith('decided:') or status.startswith('decided on every')


def resolution_rows(rows):
    """For claims made at two resolutions: whether the verdict is the same. A verdict on one seed's checkpoints that
    differs between the resolutions says so when the same comparison across training seeds shows the verdict moving
    between seeds at some resolution: then one seed per resolution cannot tell a resolution effect from a seed one."""
    table = pd.DataFrame(rows)
    if table.empty or table.px.nunique() < 2:
        return []
    out = []
    for claim, group in table.groupby('claim', sort=False):
        if group.px.nunique() < 2:
            continue
        statuses = dict(zip(group.px, group.status))
        decided = {px: s for px, s in statuses.items() if _is_decided(s)}
        if not decided:
            status = 'not decided at either resolution'
        elif len(set(statuses.values())) == 1:
            status = 'same at both resolutions'
        elif len(decided) == 1:
            status = f'decided at {next(iter(decided))} px only'
        else:
            status = 'reverses with resolution'
        if status.startswith(('decided at', 'reverses')) and re.search(r' on the seed-\d+ checkpoints', claim):
            status += _seed_caveat(table, claim)
        out.append(dict(px='both', claim=claim, evidence='; '.join(f'{px} px: {s}' for px, s in statuses.items()),
                        status=status))
    return out


def _seed_caveat(table, claim: str) -> str:
    """Why a difference between resolutions in ``claim`` (made on one seed's checkpoints) may be a seed effect: the
    same claim across training seeds (or on each of MogaNet's seeds) has seeds that disagree, or is not decided, at
    some resolution."""
    notes = []
    across = re.sub(r' on the seed-\d+ checkpoints', ' across training seeds', claim)  # (+ ' (both models)')
    each = re.sub(r' on the seed-\d+ checkpoints', " on each of MogaNet's training seeds", claim)
    seeded = table.claim.str.startswith(across) | (table.claim == each)
    for row in table[seeded & (table.px != 'both')].itertuples():
        found = re.search(r'higher on (\d+) of (\d+)(?: MogaNet)? seeds, lower on (\d+)', f'{row.evidence} {row.status}')
        if found and int(found.group(1)) and int(found.group(3)):
            notes.append(f'at {row.px} px its verdict also flips between training seeds (higher on {found.group(1)} of '
                         f'{found.group(2)}, lower on {found.group(3)})')
        elif not _is_decided(row.status):
            notes.append(f'at {row.px} px it is not decided ' + ('on every MogaNet seed' if 'on each of' in row.claim
                                                                 else 'across training seeds'))
    return ('; one seed per resolution, and ' + '; '.join(notes) + ': not shown to be an effect of resolution'
            if notes else '')


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--registry', metavar='FILE',
                   help='a claims registry (YAML): evaluate its declared claims, adjusted over the family, into '
                        '--out DIR/claims.csv and claims.md')
    p.add_argument('--compare', action='append', default=[], metavar='DIR', help='a published comparison')
    p.add_argument('--ablation', action='append', default=[], metavar='DIR', help='a published ablation grid')
    p.add_argument('--out', help='write the Markdown table here')
    p.add_argument('--readme', metavar='FILE', action='append', default=[],
                   help='with --registry: regenerate the findings table in FILE (README.md, docs/paper.md; repeatable)')
    args = p.parse_args(argv)
    if args.registry:
        from moga_lab.studies.claims import evaluate_declared
        try:
            print(evaluate_declared(args.registry, args.out, args.readme).attrs['markdown'])
        except (ValueError, FileNotFoundError) as error:
            p.error(str(error))
        return 0
    if not args.compare and not args.ablation:
        p.error('nothing to read: give --compare DIR and/or --ablation DIR (folders a study published)')
    rows, compared, seeded_grids = [], {}, {}
    try:
        for kind, folders in (('--compare', args.compare), ('--ablation', args.ablation)):
            # the claims of one kind are keyed by resolution: two folders at one resolution (e.g. the 6-epoch and
            # the 3-epoch comparison at 28 px) would silently merge into one verdict per claim
            seen = {}
            for i, folder in enumerate(folders):
                accuracy, interaction, px, cams = read_study(folder)
                px = px or f'#{i + 1}'
                if px in seen:
                    raise ValueError(f'{kind} {seen[px]} and {kind} {folder} are both at {px} px; accepted: one '
                                     f'{kind} folder per resolution (run paper_claims.py once per set of studies)')
                seen[px] = folder
                if kind == '--compare':
                    seeded = read_seeded(folder)
                    rows += compare_claims(accuracy, interaction, px, cams, seeded)
                    # (a comparison with its own seeds for every model: the per-MogaNet-seed claims are superseded)
                    if seeded is None or not all(seeded[seeded.model == n].seed.nunique() > 1
                                                 for n in dict.fromkeys(interaction.model)):
                        compared[px] = interaction
                else:
                    seeded_grids[px] = read_seeded(folder)
                    rows += ablation_claims(accuracy, interaction, px, seeded_grids[px])
        for px, interaction in compared.items():  # a comparison whose MogaNet is the grid's full row
            rows += moga_seed_claims(interaction, seeded_grids.get(px), px)
    except ValueError as error:
        p.error(str(error))
    rows += resolution_rows(rows)
    table = pd.DataFrame(rows, columns=['px', 'claim', 'evidence', 'status'])
    text = ('Exploratory: claims read after their data existed, each with its bare 95 % interval, not adjusted over '
            'the family (see --registry for declared, adjusted claims); "decided" = the interval excludes 0 '
            '(analysis/paper_claims.py). Middle-share intervals are over the images, on one checkpoint per model or '
            'row (the studies compute interactions on the seed-0 run): they do not cover training-seed variation, except in '
            'the claims "across training seeds" (curves on every seed\'s checkpoint, Welch\'s interval over the seeds) and '
            '"on each of MogaNet\'s training seeds" (MogaNet\'s seeds only: there the baselines have one each).'
            '\n\n' + table.to_markdown(index=False) + '\n')
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
