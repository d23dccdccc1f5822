"""Coverage of the claims' intervals on simulated studies with known variance components.

    python benchmarks/verdict_coverage.py [--studies 2000] [--seeds 5] [--images 32] [--out benchmarks/results/verdict_coverage.md]

Each simulated study (`moga_lab.analysis.known_studies`) has two models on ``--seeds`` training seeds and ``--images``
images per seed, the images (with their pairs and contexts) either shared by every model and seed or drawn afresh per
seed, in three mixes of variance (images above, near and below the seeds). Per case, the middle-share difference's
intervals are computed by the rule the claims use (`moga_lab.analysis.seeds.share_difference_arrays`: over seeds and
images, paired by seed or seeds independent) and by the rule published before (a t interval over the seeds' paired
differences, which leaves the images out), at 95 % and at 99.5 % (Holm's first step over ten claims). Printed and
written: how often each covers the true difference (with the Monte-Carlo error of a rate over this many studies).
"""
import argparse
import math

import numpy as np
from scipy import stats

from moga_lab.analysis.coalitions import ORDER_RATIOS
from moga_lab.analysis.curves import middle_share_of
from moga_lab.analysis.known_studies import STUDY_CASES, simulate_arrays, true_share_difference
from moga_lab.analysis.seeds import share_difference_arrays
from moga_lab.utils.atomic import atomic_write_text


def coverage(case: str, images: str, pairing: str, studies: int, seeds: int, num_images: int, seed: int = 0):
    model = STUDY_CASES[case]
    truth = true_share_difference(model)
    share = middle_share_of(ORDER_RATIOS, 'mean-abs', 0.2, 0.6)
    rng = np.random.default_rng(seed)
    hits = {('new', 0.95): 0, ('new', 0.995): 0, ('seeds only', 0.95): 0, ('seeds only', 0.995): 0}
    for _ in range(studies):
        a, b = simulate_arrays(model, seeds, num_images, images, rng)
        iv = share_difference_arrays(a, b, ORDER_RATIOS, pairing=pairing,
                                     layout='crossed' if images == 'shared' else 'nested')
        d = share(a.mean(1)) - share(b.mean(1))
        for level in (0.95, 0.995):
            low, high = iv.interval(level)
            hits[('new', level)] += low <= truth <= high
            half = stats.t.ppf(0.5 + level / 2, seeds - 1) * d.std(ddof=1) / math.sqrt(seeds)
            hits[('seeds only', level)] += abs(d.mean() - truth) <= half
    return {k: v / studies for k, v in hits.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--studies', type=int, default=2000, help='simulated studies per case')
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--images', type=int, default=32)
    p.add_argument('--out', help='write the Markdown table here')
    args = p.parse_args(argv)
    se95 = math.sqrt(0.95 * 0.05 / args.studies)
    lines = [f'{args.studies} simulated studies per row, {args.seeds} training seeds x {args.images} images; coverage '
             f'of the true middle-share difference (Monte-Carlo error of a rate: ±{100 * se95:.1f} % at 95 %, '
             f'±{100 * math.sqrt(0.995 * 0.005 / args.studies):.2f} % at 99.5 %).', '',
             '| variance mix | images | pairing | over seeds and images, 95 % | 99.5 % | t over seeds alone, 95 % | '
             '99.5 % |', '| --- | --- | --- | ---: | ---: | ---: | ---: |']
    for case in STUDY_CASES:
        for images in ('shared', 'fresh'):
            for pairing in ('seed', 'none'):
                c = coverage(case, images, pairing, args.studies, args.seeds, args.images)
                row = (f'| {case} | {images} | {pairing} | {100 * c[("new", 0.95)]:.1f} % | '
                       f'{100 * c[("new", 0.995)]:.2f} % | {100 * c[("seeds only", 0.95)]:.1f} % | '
                       f'{100 * c[("seeds only", 0.995)]:.2f} % |')
                lines.append(row)
                print(row, flush=True)
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
