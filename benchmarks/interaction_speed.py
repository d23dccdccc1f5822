"""How fast the image game evaluates masked images, per model and path, all measured side by side in one run, and
what that means per image for the authors' design and the precision mode; and what bf16 does to v(S) and to J.

    python benchmarks/interaction_speed.py                        # 224 px: MogaNet-T vs ConvNeXt-T vs Swin-T
    python benchmarks/interaction_speed.py --compile              # + torch.compile rows (about a minute each)
    python benchmarks/interaction_speed.py --image-size 28 --models moganet_xtiny --grid 7

Rows: masked evaluations per second through :class:`moga_lab.analysis.game.ImageGame` (random masks, the
``--batch-size`` the CLI uses), each the median of ``--repeats`` timed batches after a warm-up: MogaNet as is
("unfused") and through ``for_inference()`` ("fused", what the game uses by default), fp32 and bf16 autocast, and
optionally compiled; the baselines as timm builds them. Random weights (speed does not depend on them). Minutes per
image = distinct forward passes / rate: the authors' design (50 pairs x 50 contexts x 13 orders, distinct coalitions
counted on a real draw) and the precision mode at its default cap in the cost benchmark (25 % of the authors'
nominal 130,000). The bf16 section evaluates the same coalitions in fp32 and bf16 on the fused MogaNet.
"""
import argparse
import statistics
import time

import pandas as pd
import timm
import torch

import moga_lab  # noqa: F401  (registers moganet_* with timm)
from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.estimate import InteractionSettings, evaluation_model
from moga_lab.analysis.game import ImageGame
from moga_lab.analysis.coalitions import order_grid, sample_contexts, with_pairs as _with_pairs
from moga_lab.analysis.strength import estimate_strength
from moga_lab.models.factory import SMALL_IMAGE_MAX, create_classifier
from moga_lab.models.fuse import NATIVE_BF16, onednn_bf16
from moga_lab.utils.runtime import keep_freed_memory


def masked_rate(game: ImageGame, n: int, batch: int, repeats: int) -> float:
    masks = torch.rand(batch, n, generator=torch.Generator().manual_seed(0)) < 0.5
    game(masks)  # warm-up (and compilation)
    game(masks)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        game(masks)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def authors_forwards(grid: int, pairs: int = 50, contexts: int = 50) -> int:
    """Distinct coalitions of one draw of the authors' design (the nominal count is 4 x pairs x contexts x 13)."""
    n = grid * grid
    orders = order_grid(n, ORDER_RATIOS)
    g = torch.Generator().manual_seed(0)
    chosen = sample_pairs(grid, pairs, generator=g)
    ctx = sample_contexts(n, chosen, orders, contexts, generator=g)
    O, P, K, _ = ctx.shape
    coalitions = _with_pairs(ctx, chosen[None, :, None, :].expand(O, P, K, 2)).reshape(-1, n)
    return len(torch.unique(coalitions, dim=0))


def build(name: str, size: int):
    """The model as the game meets it: ImageNet-shaped (3 channels, 1000 classes) above 64 px; at <= 64 px the
    Fashion-MNIST studies' classifier (1 channel, 10 classes, small-image stems: timm's ConvNeXt / Swin stems
    cannot take 28 px)."""
    if size <= SMALL_IMAGE_MAX:
        return create_classifier(name, num_classes=10, in_chans=1, image_size=size).eval()
    kwargs = dict(img_size=size) if name.startswith('swin') else {}
    return timm.create_model(name, num_classes=1000, **kwargs).eval()


def bf16_effect(model, image, grid: int, pairs: int, contexts: int, batch: int) -> pd.DataFrame:
    """Per order: J and J_debiased on the same pairs and contexts in fp32 and in bf16 (fused model)."""
    n = grid * grid
    orders = order_grid(n, ORDER_RATIOS)
    g = torch.Generator().manual_seed(1)
    chosen = sample_pairs(grid, pairs, generator=g)
    ctx = sample_contexts(n, chosen, orders, contexts, generator=g)
    with torch.inference_mode():
        label = int(model(image[None].contiguous(memory_format=torch.channels_last)).argmax())
    out = {}
    for bf16 in (False, True):
        game = ImageGame(model, image, label, grid, bf16=bf16)
        out[bf16] = estimate_strength(game, n, chosen, orders, contexts=ctx, batch_size=batch)
        masks = torch.rand(batch, n, generator=torch.Generator().manual_seed(2)) < 0.5
        out[(bf16, 'v')] = game(masks)
    v32, v16 = out[(False, 'v')], out[(True, 'v')]
    print(f'v(S) on {len(v32)} random coalitions: fp32 sd {v32.std():.4f}; |bf16 - fp32| mean {(v16 - v32).abs().mean():.4f}, '
          f'max {(v16 - v32).abs().max():.4f} ({100 * (v16 - v32).abs().mean() / v32.std():.1f} % of the sd); '
          f'correlation {torch.corrcoef(torch.stack([v32, v16]))[0, 1]:.5f}')
    s32, s16 = out[False].stats, out[True].stats
    return pd.DataFrame(dict(ratio=ORDER_RATIOS, order=orders, J_fp32=s32['J'].numpy(), J_bf16=s16['J'].numpy(),
                             noise_floor_fp32=s32['noise_floor'].numpy(), noise_floor_bf16=s16['noise_floor'].numpy(),
                             debiased_fp32=s32['J_debiased'].numpy(), debiased_bf16=s16['J_debiased'].numpy(),
                             debiased_se_fp32=s32['J_debiased_se'].numpy()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_tiny', 'convnext_tiny', 'swin_tiny_patch4_window7_224'])
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--grid', type=int, default=14)
    p.add_argument('--batch-size', type=int, nargs='+', default=[64],
                   help='masked images per forward pass; several values: one row each, measured side by side')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--compile', action='store_true', help='also torch.compile rows')
    p.add_argument('--precision-forwards', type=int, default=32_500,
                   help='forward passes per image of the precision mode (default: its cap in the cost benchmark)')
    p.add_argument('--bf16-pairs', type=int, default=10, help='pairs for the bf16-vs-fp32 curve (0: skip it)')
    p.add_argument('--bf16-contexts', type=int, default=8)
    p.add_argument('--checkpoint', help='a fit checkpoint for the bf16 section (a trained model on one of its test '
                                        'images); default: random weights, whose log-odds barely move')
    p.add_argument('--bf16-only', action='store_true', help='skip the speed rows')
    p.add_argument('--fused-only', action='store_true', help='skip the unfused MogaNet rows')
    args = p.parse_args(argv)
    keep_freed_memory()
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    size, n = args.image_size, args.grid ** 2
    image = torch.randn(1 if size <= SMALL_IMAGE_MAX else 3, size, size)
    authors = authors_forwards(args.grid)
    print(f'{torch.get_num_threads()} threads; {size} px, {args.grid}x{args.grid} grid, batch {args.batch_size}; '
          f'authors\' design: {authors:,} distinct of 130,000 nominal forward passes; precision mode: '
          f'{args.precision_forwards:,}', flush=True)
    # bf16 rows only where the CPU computes bfloat16 natively: emulated (AVX2 only) it is many times slower than fp32
    precisions = (False, True) if onednn_bf16() else (False,)
    if not onednn_bf16():
        print(f'bf16 rows left out: this CPU has no {NATIVE_BF16}')
    rows = []
    models = {}
    for name in args.models:  # every name built before anything is timed: a bad one is one line, not a traceback
        try:
            models[name] = build(name, size)
        except (ValueError, RuntimeError) as error:
            p.error(f'--models {name}: {error}')
    for name in ([] if args.bf16_only else args.models):
        model = models[name]
        paths = [('unfused', dict(fuse=False))] if name.startswith('moganet') and not args.fused_only else []
        paths += [('fused' if name.startswith('moganet') else 'timm', dict(fuse=True))]
        for label, kw in paths:
            for compile_ in ([False, True] if args.compile else [False]):
                if label == 'unfused' and compile_:
                    continue
                runner = evaluation_model(model, InteractionSettings(compile=compile_, **kw))
                runner.to(memory_format=torch.channels_last)
                for bf16, batch in [(b, k) for b in precisions for k in args.batch_size]:
                    if compile_:
                        torch._dynamo.reset()
                    game = ImageGame(runner, image, 0, args.grid, bf16=bf16, pad_to=batch if compile_ else None)
                    r = masked_rate(game, n, batch, args.repeats)
                    rows.append(dict(model=name, path=label + (' + compile' if compile_ else ''),
                                     dtype='bf16' if bf16 else 'fp32', batch=batch, masked_per_s=round(r, 1),
                                     authors_min_per_image=round(authors / r / 60, 1),
                                     precision_min_per_image=round(args.precision_forwards / r / 60, 1)))
                    print(rows[-1], flush=True)
    if rows:
        print()
        print(pd.DataFrame(rows).to_markdown(index=False))
    moga = [m for m in args.models if m.startswith('moganet')]
    if (moga or args.checkpoint) and args.bf16_pairs:
        if args.checkpoint:
            from moga_lab.loaders import load_classifier, load_eval_images
            trained = load_classifier(args.checkpoint)
            images, _, ids, _, _ = load_eval_images(trained, 1, seed=0)
            model, image, what = trained.model.eval(), images[0], f'{trained.name} ({args.checkpoint}), test image {ids[0]}'
        else:
            model, what = models[moga[0]], f'{moga[0]}, random weights'
        fused = evaluation_model(model, InteractionSettings())
        print(f'\nbf16 vs fp32 through the fused model: {what}; same {args.bf16_pairs} pairs x {args.bf16_contexts} '
              'contexts:')
        effect = bf16_effect(fused, image, args.grid, args.bf16_pairs, args.bf16_contexts, args.batch_size[0])
        print(effect.to_markdown(index=False, floatfmt='.4f'))


if __name__ == '__main__':
    main()
