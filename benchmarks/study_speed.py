"""Images/s of the models of the Fashion-MNIST studies, measured side by side in one run.

    python benchmarks/study_speed.py [--models moganet_xtiny convnext_atto swin_femto] [--sizes 28 56]
                                     [--batch-size 128] [--rounds 2] [--repeats 5] [--threads N]

The study scripts (analysis/compare_models.py, experiments/ablate.py) report the images/s each training process saw,
which depends on what else ran on the machine at the time. This measures the same models the studies build
(``moga_lab.models.factory.create_classifier``: 1 input channel, 10 classes, the small-image stems at <= 64 px) with
nothing else running:

* train: one optimisation step (forward, backward, AdamW: throughput.py's ``train_step``), channels_last, as the
  LightningModule runs it;
* infer: a forward pass in eval mode under inference_mode through the module the interaction game runs
  (``moga_lab.analysis.estimate.evaluation_model``: MogaNet's fused ``for_inference()`` copy, the others as they are).

Each rate is the median of ``--repeats`` batches after two warm-up batches; models are measured in turn, ``--rounds``
times, and the best round is kept. Prints one Markdown table (images/s and each model's rate relative to the first).
"""
import argparse

import pandas as pd
import torch

import throughput  # noqa: E402  (its timing loop, shared by the benchmarks; the script's folder is on sys.path)

from moga_lab.analysis.estimate import InteractionSettings, evaluation_model  # noqa: E402
from moga_lab.cli.common import MIN_IMAGE_SIZE, int_at_least  # noqa: E402
from moga_lab.models.factory import create_classifier  # noqa: E402
from moga_lab.utils.runtime import describe_machine, keep_freed_memory  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_xtiny', 'convnext_atto', 'swin_femto'])
    p.add_argument('--sizes', nargs='+', type=int_at_least(MIN_IMAGE_SIZE), default=[28, 56])
    p.add_argument('--batch-size', type=int_at_least(1), default=128)
    p.add_argument('--rounds', type=int_at_least(1), default=2)
    p.add_argument('--repeats', type=int_at_least(1), default=5)
    p.add_argument('--threads', type=int_at_least(1), help="intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(f'{describe_machine()}, {torch.get_num_threads()} threads; batch {args.batch_size}, best of {args.rounds} '
          f'rounds of the median of {args.repeats} batches', flush=True)
    rows = []
    for size in args.sizes:
        x = torch.randn(args.batch_size, 1, size, size).contiguous(memory_format=torch.channels_last)
        fns = {}
        for name in args.models:
            torch.manual_seed(0)
            try:
                model = create_classifier(name, num_classes=10, in_chans=1, image_size=size)
            except (ValueError, RuntimeError) as error:  # an unknown name: one line, not a traceback
                p.error(f'--models {name}: {error}')
            fns[(name, 'train')] = throughput.train_step(model.train().to(memory_format=torch.channels_last))
            runner = evaluation_model(create_classifier(name, num_classes=10, in_chans=1, image_size=size),
                                      InteractionSettings())
            fns[(name, 'infer')] = throughput.inference(runner)
        best = {k: 0.0 for k in fns}
        for _ in range(args.rounds):
            for key, fn in fns.items():
                best[key] = max(best[key], throughput.rate(fn, x, args.repeats))
        first = args.models[0]
        for name in args.models:
            row = {'px': size, 'model': name}
            for mode in ('train', 'infer'):
                row[f'{mode} images/s'] = round(best[(name, mode)], 1)
                row[f'{mode} vs {first}'] = f'{best[(name, mode)] / best[(first, mode)]:.2f}x'
            rows.append(row)
            print(row, flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == '__main__':
    main()
