"""What a trustworthy interaction curve costs: the precision mode against the authors' fixed design and a high-budget
reference, on the same images and pairs (independent contexts per design).

    python benchmarks/interaction_cost.py --checkpoint runs/xt/best.ckpt --num-images 2 --out runs/cost_xt
    python benchmarks/interaction_cost.py --variant tiny --image-size 224 --pairs 20 --num-images 1 --bf16 \
        --out runs/cost_t224           # random weights: say so when quoting it

Designs per image (all through the fused model, ``for_inference()``):
  reference  --reference-contexts (200) contexts per pair and order: the curve to reproduce
  authors    50 contexts per pair and order (the authors' design, 4 x pairs x 50 x orders forward passes nominal)
  target     --target-ci (0.05) with a cap of --budget-fraction (0.25) of the authors' nominal forward passes
Per design: distinct forward passes, seconds, and per order J (naive), J_debiased with its 95 % interval. The summary
says, order by order, whether the reference's debiased value lies inside the target design's interval, and compares
the normalised curves. Rows are written per (image, design) atomically; a stopped run resumes.
"""
import argparse
import os
import sys
import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.estimate import InteractionSettings, evaluation_model
from moga_lab.analysis.game import ImageGame
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.strength import estimate_strength
from moga_lab.utils.runtime import keep_freed_memory
from moga_lab.utils.atomic import atomic_write_csv

STATS = ('J', 'J_se', 'noise_floor', 'I2', 'I2_se', 'J_debiased', 'J_debiased_low', 'J_debiased_high', 'contexts')


def model_and_images(args):
    if args.checkpoint:
        from moga_lab.loaders import load_classifier, load_eval_images
        trained = load_classifier(args.checkpoint)
        images, labels, ids, info, _ = load_eval_images(trained, args.num_images, seed=args.seed)
        return trained.model.eval(), images, labels, ids, f'{trained.name} ({args.checkpoint})'
    # MogaNet at ImageNet size with random weights (no ImageNet weights are needed for a cost measurement):
    # Fashion-MNIST test images resized to --image-size, grey copied to 3 channels; label = the model's own top class
    import torch.nn.functional as F
    from moga_lab.data import FashionMNISTDataModule
    from moga_lab.models import MogaNet
    torch.manual_seed(args.seed)
    model = MogaNet(args.variant, num_classes=1000).eval()
    dm = FashionMNISTDataModule()
    dm.setup('test')
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randperm(len(dm.test_set), generator=g)[:args.num_images].tolist()
    images = torch.stack([dm.test_set[i][0] for i in ids])
    images = F.interpolate(images, size=args.image_size, mode='bicubic', align_corners=False).expand(-1, 3, -1, -1)
    with torch.inference_mode():
        labels = model(images).argmax(1)
    return model, images.contiguous(), labels, ids, f'MogaNet-{args.variant} random weights, {args.image_size} px'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', help='a fit checkpoint (default: random-weight MogaNet --variant)')
    p.add_argument('--variant', default='tiny')
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--grid', type=int, help='default 7 up to 64 px, 14 above')
    p.add_argument('--pairs', type=int, default=50)
    p.add_argument('--num-images', type=int, default=2)
    p.add_argument('--reference-contexts', type=int, default=200)
    p.add_argument('--authors-contexts', type=int, default=50)
    p.add_argument('--target-ci', type=float, default=0.05)
    p.add_argument('--budget-fraction', type=float, default=0.25)
    p.add_argument('--initial-contexts', type=int, default=8, help='the precision mode\'s pilot per pair and order')
    p.add_argument('--designs', nargs='+', default=['target', 'authors', 'reference'])
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--bf16', action='store_true')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    keep_freed_memory()
    torch.set_grad_enabled(False)
    model, images, labels, ids, what = model_and_images(args)
    grid = args.grid or (7 if images.shape[-1] <= 64 else 14)
    n = grid * grid
    orders = order_grid(n, ORDER_RATIOS)
    nominal = 4 * args.pairs * args.authors_contexts * len(orders)
    runner = evaluation_model(model, InteractionSettings(fuse=True))
    runner.to(memory_format=torch.channels_last)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'cost.csv')
    done = pd.read_csv(path) if os.path.isfile(path) else pd.DataFrame(columns=['image_id', 'design'])
    keys = set(zip(done.image_id, done.design))
    print(f'{what}; {grid}x{grid} grid, {args.pairs} pairs, {len(orders)} orders; authors\' design nominal {nominal:,} '
          f'forward passes; {"bf16" if args.bf16 else "fp32"}, batch {args.batch_size}; CPU threads '
          f'{torch.get_num_threads()}', flush=True)
    for k, image_id in enumerate(ids):
        pairs = sample_pairs(grid, args.pairs, 2, generator=torch.Generator().manual_seed(1_000_003 * args.seed + image_id))
        game = ImageGame(runner, images[k], int(labels[k]), grid, bf16=args.bf16)
        for d, design in enumerate(args.designs):
            if (image_id, design) in keys:
                continue
            g = torch.Generator().manual_seed(7919 * (d + 1) + image_id)  # independent contexts per design
            kwargs = dict(reference=dict(num_contexts=args.reference_contexts),
                          authors=dict(num_contexts=args.authors_contexts),
                          target=dict(num_contexts=args.authors_contexts, target_ci=args.target_ci,
                                      initial_contexts=args.initial_contexts,
                                      max_forwards=int(args.budget_fraction * nominal)))[design]
            bar = tqdm(desc=f'image {image_id} {design}', unit='fwd', leave=False)
            start = time.perf_counter()
            est = estimate_strength(game, n, pairs, orders, generator=g, batch_size=args.batch_size,
                                    progress=bar.update, **kwargs)
            seconds = time.perf_counter() - start
            bar.close()
            rows = pd.DataFrame({c: est.stats[c].numpy() for c in STATS})
            rows.insert(0, 'image_id', image_id)
            rows.insert(1, 'design', design)
            rows.insert(2, 'order', orders)
            rows.insert(3, 'ratio', ORDER_RATIOS)
            rows['converged'] = est.converged.numpy()
            rows['forwards'], rows['seconds'], rows['nominal_authors'] = est.forwards, seconds, nominal
            done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
            atomic_write_csv(path, done)
            print(f'image {image_id} {design}: {est.forwards:,} forward passes in {seconds:.0f} s '
                  f'({est.forwards / seconds:.0f}/s), {est.rounds} round(s)', flush=True)
    summarise(done, args.out)
    return 0


def summarise(frame: pd.DataFrame, out: str) -> None:
    lines = []
    for image_id, sub in frame.groupby('image_id'):
        by = {d: s.set_index('order') for d, s in sub.groupby('design')}
        if 'reference' not in by:
            continue
        ref = by['reference']
        nominal = int(ref.nominal_authors.iloc[0])
        for design in [d for d in ('target', 'authors') if d in by]:
            cur = by[design]
            tol = 1e-6 * ref.J_debiased
            inside = ((cur.J_debiased_low - tol <= ref.J_debiased) & (ref.J_debiased <= cur.J_debiased_high + tol))
            rel = ((cur.J_debiased - ref.J_debiased).abs() / ref.J_debiased).max()
            norm_cur = cur.J_debiased / cur.J_debiased.mean()
            norm_ref = ref.J_debiased / ref.J_debiased.mean()
            naive_excess = ((cur.J - ref.J) / ref.J).iloc[1:-1].mean()  # naive J vs the reference's naive J
            lines.append(dict(image_id=image_id, design=design, forwards=int(cur.forwards.iloc[0]),
                              share_of_authors_nominal=cur.forwards.iloc[0] / nominal,
                              seconds=float(cur.seconds.iloc[0]),
                              reference_inside_interval=f'{int(inside.sum())}/{len(inside)}', max_rel_dev_debiased=float(rel),
                              max_abs_dev_normalised=float((norm_cur - norm_ref).abs().max()),
                              converged=f'{int(cur.converged.sum())}/{len(cur)}',
                              naive_vs_reference_naive=float(naive_excess)))
        lines.append(dict(image_id=image_id, design='reference', forwards=int(ref.forwards.iloc[0]),
                          share_of_authors_nominal=ref.forwards.iloc[0] / nominal, seconds=float(ref.seconds.iloc[0])))
    if not lines:
        return
    table = pd.DataFrame(lines)
    atomic_write_csv(os.path.join(out, 'summary.csv'), table)
    print(table.to_markdown(index=False, floatfmt='.3f'))
    per_order = frame.pivot_table(index=['image_id', 'ratio'], columns='design',
                                  values=['J_debiased', 'J', 'contexts']).round(4)
    print(per_order.to_string())
    curves = image_set_curves(frame)
    if curves is not None:
        atomic_write_csv(os.path.join(out, 'curves.csv'), curves)
        print(f'\nThe curve over the {frame.image_id.nunique()} images (root of the mean I2; Monte-Carlo 95 % interval '
              'given the images and pairs):')
        print(curves.to_markdown(index=False, floatfmt='.4f'))


def image_set_curves(frame: pd.DataFrame):
    """Per design and order: sqrt(mean over images of I2) with its Monte-Carlo interval, normalised by its mean over
    the orders; and whether the reference's value lies inside each design's interval."""
    images = frame.groupby('design').image_id.nunique()
    common = set.intersection(*(set(frame[frame.design == d].image_id) for d in images.index))
    if 'reference' not in images or not common:
        return None
    sub = frame[frame.image_id.isin(common)]
    g = sub.groupby(['design', 'ratio'])
    table = pd.DataFrame(dict(I2=g.I2.mean(), I2_se=g.I2_se.apply(lambda x: (x ** 2).sum() ** 0.5 / len(x)))).reset_index()
    table['strength'] = table.I2.clip(lower=0) ** 0.5
    table['low'] = (table.I2 - 1.96 * table.I2_se).clip(lower=0) ** 0.5
    table['high'] = (table.I2 + 1.96 * table.I2_se).clip(lower=0) ** 0.5
    table['normalised'] = table.strength / table.groupby('design').strength.transform('mean')
    ref = table[table.design == 'reference'].set_index('ratio')
    table['reference'] = table.ratio.map(ref.strength)
    tol = 1e-6 * table.reference  # m = 0 and n - 2 are exact in every design, up to the last float bits of a batch
    table['reference_inside'] = (table.low - tol <= table.reference) & (table.reference <= table.high + tol)
    table['reference_normalised'] = table.ratio.map(ref.normalised)
    return table[['design', 'ratio', 'strength', 'low', 'high', 'reference', 'reference_inside', 'normalised',
                  'reference_normalised']]


if __name__ == '__main__':
    sys.exit(main())
