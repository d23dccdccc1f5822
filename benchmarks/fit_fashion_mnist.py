"""MogaNet-XT against a ConvNeXt and a Swin of similar size on Fashion-MNIST, same budget, one machine.

    python benchmarks/fit_fashion_mnist.py [--epochs 5] [--models moganet_xtiny convnext_atto swin_femto]

Each model trains with the same recipe (AdamW, cosine with warmup, label smoothing 0.1, crop+flip, batch 64,
the epochs given; 5000 of the 60k training images held out for validation unless ``--val-size`` says otherwise),
is tested on the 10k test images, and the table of test top-1/top-5, training images/s
and wall time is printed (Markdown) and written to ``<out>/fit_fashion_mnist.csv``. Runs resume: a model
whose run directory already holds results.yaml is not trained again, one with last.ckpt continues.
"""
import argparse
import os
import sys

import pandas as pd
import yaml

from moga_lab.cli.common import MIN_IMAGE_SIZE, int_at_least, unit_fraction
from moga_lab.utils.runtime import keep_freed_memory
from moga_lab.data import DataError
from moga_lab.training import fit, prepare, small_data_recipe
from moga_lab.training.config import ConfigError
from moga_lab.utils.atomic import atomic_write_csv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_xtiny', 'convnext_atto', 'swin_femto'])
    p.add_argument('--epochs', type=int_at_least(1), default=5)
    p.add_argument('--batch-size', type=int_at_least(1), default=64)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--drop-path', type=unit_fraction, default=0.05, help='stochastic depth rate for every model')
    p.add_argument('--stem-stride', type=int, choices=(1, 2, 4), default=None,
                   help='MogaNet stem stride (default: 2 for 28 px; 4 is the reference stem)')
    p.add_argument('--image-size', type=int_at_least(MIN_IMAGE_SIZE), default=None,
                   help='resize the 28 px images (bicubic) to this size')
    p.add_argument('--val-size', type=int_at_least(1), default=None,
                   help='training images held out for validation / best-checkpoint choice (default: 5000 of the 60k)')
    p.add_argument('--out', default='runs/bench-fit')
    p.add_argument('--data-dir', default=None)
    args = p.parse_args(argv)
    keep_freed_memory()  # speed only, as the fit CLI does (moga_lab/utils/runtime.py)
    rows = []
    for name in args.models:
        cfg = small_data_recipe('xtiny')
        cfg.model.name = name
        cfg.model.drop_path_rate = args.drop_path
        cfg.data.batch_size = args.batch_size
        cfg.data.data_dir = args.data_dir
        cfg.data.image_size = args.image_size
        cfg.data.val_size = args.val_size
        if name.startswith('moganet_'):
            cfg.model.stem_stride = args.stem_stride
        cfg.optim.lr = args.lr
        cfg.trainer.epochs = args.epochs
        cfg.trainer.limit_train_batches = None
        cfg.trainer.val_check_interval = None
        cfg.trainer.seed = args.seed
        cfg.trainer.progress_bar = sys.stderr.isatty()
        run_dir = os.path.join(args.out, name)
        cfg.trainer.run_dir = run_dir
        results = os.path.join(run_dir, 'results.yaml')
        try:  # reads the data and builds the network, as the fit CLI does: bad input fails here, in one line
            prepared = prepare(cfg)
        except (ValueError, ConfigError, DataError) as error:
            p.error(str(error))
        if not os.path.isfile(results):
            fit(cfg, resume=os.path.isfile(os.path.join(run_dir, 'last.ckpt')), prepared=prepared)
        r = yaml.safe_load(open(results))
        from moga_lab.training import ModelConfig, build_model
        params = sum(q.numel() for q in build_model(ModelConfig(name=name), 10, 1, 28).parameters())
        rows.append(dict(model=name, params_M=round(params / 1e6, 2), epochs=args.epochs,
                         image_px=args.image_size or 28, val_images=len(prepared[0].val_set),
                         stem_stride=(args.stem_stride or 2) if name.startswith('moganet_') else '',
                         test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
                         train_images_per_s=r['train_images_per_second'], wall_min=round(r['wall_seconds'] / 60, 1)))
    table = pd.DataFrame(rows)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_csv(os.path.join(args.out, 'fit_fashion_mnist.csv'), table)
    print(table.to_markdown(index=False) if hasattr(table, 'to_markdown') else table.to_string(index=False))


if __name__ == '__main__':
    main()
