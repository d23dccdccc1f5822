"""Minutes per image at 224 px: the authors' design (14 x 14 patches, 50 pairs x 50 contexts) against the shared design
at the budget that matches its precision, side by side on the same model and image, and what the paper's experiment
(3 models x 50 images) takes with each on this machine.

    python benchmarks/design_time_224.py --ratio 4.0 --out benchmarks/results/design_time_224.md

``--ratio``: the passes the authors' design needs per pass of the shared design at equal precision of the RMS
middle share, as `benchmarks/design_cost.py` measured it on trained models at 28 px (its median). The shared design's
budget is the authors' passes / ratio, planned from a pilot on the image (`moga_lab.analysis.planner`). Both designs
are counted exactly (their contexts drawn, distinct coalitions counted) and timed on a sample of their own coalitions
(``--sample`` masked passes each, in one run); ``--full`` runs the shared design in full instead. Models: MogaNet-T,
ConvNeXt-T and Swin-T with random weights (no ImageNet weights on this machine: the forward passes cost the same), on
a Fashion-MNIST test image resized to 224 px; bf16 trunks where the CPU has native bfloat16. The planner's pilot (one
per model, its passes in the table) is not counted in the minutes per image.
"""
import argparse
import time

import torch

from moga_lab.analysis.coalitions import with_pairs
from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.estimate import InteractionSettings, evaluation_model, plan_interaction
from moga_lab.analysis.game import ImageGame
from moga_lab.analysis.interaction import order_grid, sample_contexts
from moga_lab.analysis.shared import draw_shared_contexts, estimate_shared
from moga_lab.models.fuse import onednn_bf16
from moga_lab.utils.atomic import atomic_write_text
from moga_lab.utils.runtime import describe_machine

MODELS = ('moganet_tiny', 'convnext_tiny', 'swin_tiny_patch4_window7_224')


def _image(size: int = 224):
    import torch.nn.functional as F
    from moga_lab.data import FashionMNISTDataModule
    dm = FashionMNISTDataModule()
    dm.setup('test')
    x = dm.test_set[0][0].unsqueeze(0)
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False).expand(-1, 3, -1, -1).contiguous()[0]


def _rate(game, masks: torch.Tensor, batch: int) -> float:
    game(masks[:batch])                                                   # warm-up
    t0 = time.perf_counter()
    for start in range(0, len(masks), batch):
        game(masks[start:start + batch])
    return len(masks) / (time.perf_counter() - t0)


def main(argv=None):
    import timm
    import moga_lab  # noqa: F401  (registers moganet_* with timm)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ratio', type=float, required=True, help='equal-precision ratio measured at 28 px')
    p.add_argument('--models', nargs='+', default=list(MODELS))
    p.add_argument('--sample', type=int, default=1024, help='masked passes timed for the authors\' design')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--full', action='store_true', help='run the shared design in full rather than time a sample')
    p.add_argument('--out', help='write the Markdown table here')
    args = p.parse_args(argv)
    bf16 = onednn_bf16()
    image = _image()
    grid, n = 14, 196
    orders = order_grid(n, ORDER_RATIOS)
    lines = [f'{describe_machine()}; {"bf16 trunk" if bf16 else "fp32"}, batch {args.batch_size}, random weights, one '
             f'224 px image, {grid}x{grid} patches. The shared design runs at the authors\' passes / {args.ratio:g} '
             '(their equal-precision ratio at 28 px); both designs\' rates are measured in this run.', '',
             '| model | authors: passes | masked passes / s | min / image | shared: plan (pilot passes) | passes | '
             'masked passes / s | min / image | 50 images: authors / shared (h) |',
             '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |']
    total = [0.0, 0.0]
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=1000).eval()
        settings = InteractionSettings(grid=grid, num_pairs=50, num_contexts=50, batch_size=args.batch_size, bf16=bf16)
        runner = evaluation_model(model, settings)
        with torch.inference_mode():
            label = int(runner(image.unsqueeze(0).contiguous(memory_format=torch.channels_last)).argmax())
        game = ImageGame(runner, image, label, grid, bf16=bf16)
        g = torch.Generator().manual_seed(0)
        pairs = sample_pairs(grid, 50, generator=g)
        ctx = sample_contexts(n, pairs, orders, 50, g)                         # [O, P, K, n]
        masks = torch.unique(with_pairs(ctx, pairs[None, :, None, :].expand(len(orders), -1, 50, -1)).reshape(-1, n),
                             dim=0)
        authors_passes = len(masks)
        authors_rate = _rate(game, masks[torch.randperm(len(masks), generator=g)[:args.sample]], args.batch_size)
        budget = authors_passes / args.ratio
        plan, planned = plan_interaction([runner], image.unsqueeze(0), torch.tensor([label]), settings, budget=budget,
                                         pilot_images=1)
        shared_pairs = sample_pairs(grid, plan.num_pairs, generator=g)
        if args.full:
            t0 = time.perf_counter()
            shared_passes = estimate_shared(game, n, shared_pairs, orders, list(plan.contexts), share=plan.share,
                                            generator=g, batch_size=args.batch_size).forwards
            shared_seconds = time.perf_counter() - t0
        else:
            draws = draw_shared_contexts(n, shared_pairs, orders, list(plan.contexts), g, plan.share)
            shared_masks = torch.unique(with_pairs(draws.contexts[draws.draw], shared_pairs[draws.pair]).reshape(-1, n),
                                        dim=0)
            shared_passes = len(shared_masks)
            rate = _rate(game, shared_masks[torch.randperm(shared_passes, generator=g)[:args.sample]], args.batch_size)
            shared_seconds = shared_passes / rate
        minutes = (authors_passes / authors_rate / 60, shared_seconds / 60)
        total[0] += 50 * minutes[0] / 60
        total[1] += 50 * minutes[1] / 60
        rows.append(f'| {name} | {authors_passes:,} | {authors_rate:.0f} | {minutes[0]:.1f} | {plan.num_pairs} pairs, '
                    f'K {min(plan.contexts[1:-1])}-{max(plan.contexts[1:-1])}, share {plan.share or 16} '
                    f'({plan.pilot_forwards:,}) | '
                    f'{shared_passes:,} | {shared_passes / shared_seconds:.0f} | {minutes[1]:.1f} | '
                    f'{50 * minutes[0] / 60:.1f} / {50 * minutes[1] / 60:.1f} |')
        print(rows[-1], flush=True)
    lines += rows + ['', f'The paper\'s experiment (these 3 models x 50 images) on this machine: {total[0]:.1f} h with '
                     f'the authors\' design, {total[1]:.1f} h with the shared design (pilots not counted: one per '
                     'model, a few minutes).']
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
