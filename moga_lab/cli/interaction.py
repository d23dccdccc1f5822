"""``python -m moga_lab.cli.interaction --checkpoint A.ckpt [--checkpoint B.ckpt ...] --num-images N --out DIR``
``python -m moga_lab.cli.interaction --model moganet_tiny --weights T.pth.tar --model convnext_tiny --weights C.pth
--data imagefolder --data-dir IMAGENET --num-images 50 --one-per-class --target-ci 0.05 --out DIR``

Multi-order interaction strength curves (Deng et al. 2022) of several models on the same images, pairs and
contexts: fit checkpoints on their test set, or released / timm weights on an ImageFolder at 224 px, every model
seeing the same pixels (``--eval-transform``). Writes ``DIR/interaction.csv`` (tidy: one row per model, image and order; also
``.parquet`` when pyarrow is installed; both the authors' naive J and the debiased strength with their noise floor
and intervals), ``DIR/curve.csv`` (the normalised curve of ``--statistic`` with 95 % bootstrap intervals over
images) and ``DIR/interaction_curves.png``. ``--target-ci 0.05`` replaces the fixed context budget by a precision
target (see moga_lab.analysis.strength).

Rows are appended per image, atomically; a killed run started again with the same arguments continues where
it stopped. ``--devices N`` spreads the images over N processes (Lightning Fabric, DDP); each writes its own
part file, and rank 0 merges them once at the end.
"""
import glob
import os
import sys
from typing import Any, Dict, List, Optional

from moga_lab.cli.common import Parser, add_model_arguments, choice, fail, model_sources, user_errors
from moga_lab.cli.design import add_design_arguments, apply_design_arguments, plan_from_arguments

PART_GLOB = 'parts/rank*.csv'


def build_parser() -> Parser:
    """The command's options (``--help`` prints them with the module docstring)."""
    from moga_lab.analysis.coalitions import ORDER_RATIOS
    from moga_lab.analysis.game import BASELINES, VALUES
    from moga_lab.analysis.tables import STATISTICS
    from moga_lab.data import DATASETS
    p = Parser(prog='python -m moga_lab.cli.interaction', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    add_model_arguments(p)
    p.add_argument('--data', type=choice(DATASETS), help="default: the first checkpoint's data; imagefolder for --weights")
    p.add_argument('--data-dir')
    p.add_argument('--num-images', type=int, default=8)
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--grid', type=int, help='patch grid g (n = g*g players); default 7 for 28 px, 8 for 32 px, 14 above')
    p.add_argument('--pairs', type=int, help='pairs per image (default 20 small images / 50 ImageNet)')
    p.add_argument('--contexts', type=int, help='contexts per pair and order (default 24 / 50)')
    p.add_argument('--ratios', type=lambda s: tuple(float(r) for r in s.split(',')), default=ORDER_RATIOS,
                   help='order ratios m/(n-2), comma-separated (default the authors\' 13)')
    p.add_argument('--value', type=choice(VALUES), default='log-odds', help='v(S) (default log-odds of the true class)')
    p.add_argument('--batch-size', type=int, help='masked images per forward pass (default 256 up to 64 px, 64 above)')
    p.add_argument('--target-ci', type=float, metavar='REL',
                   help="precision mode: a pilot plans the contexts for every order's 95 %% interval to be within REL "
                        'of its value (e.g. 0.05), then fresh contexts give the unbiased estimate; default: the fixed '
                        '--contexts budget')
    p.add_argument('--target-over', type=choice(('image', 'images')), default='image',
                   help='--target-ci per image (default) or for the curve over the --num-images images (each image '
                        'then needs sqrt(N) x less precision; the precision reached is printed)')
    p.add_argument('--max-forwards', type=int,
                   help='precision mode: cap on masked forward passes per image (default: the fixed design\'s cost)')
    add_design_arguments(p)
    p.add_argument('--statistic', type=choice(('auto',) + tuple(STATISTICS)), default='auto',
                   help="curve and plot: mean-abs (mean |I|, the paper's estimand, noise removed), rms "
                        "(root-mean-square of I, noise removed) or naive (the authors' "
                        'mean |I| as computed, drawn with its noise floor); auto (default): mean-abs where its bias '
                        'bound is within 10 %% of its value in the middle orders, else rms (and says so); the middle '
                        'shares are printed under all')
    p.add_argument('--baseline', type=choice(BASELINES), default='zero',
                   help="what masked patches show: zero (0 after normalisation, the mean colour: the authors'; "
                        'default), pixel-mean (each pixel\'s mean over the training images, Deng et al.; over the '
                        '--data-dir images for an ImageFolder), black, blur (the image Gaussian-blurred)')
    p.add_argument('--bf16', action='store_true',
                   help='bf16 autocast for the masked forward passes (faster only where the CPU has native bfloat16: AMX, AVX-512)')
    p.add_argument('--no-fuse', action='store_true', help="evaluate MogaNet as is, not through for_inference()")
    p.add_argument('--compile', action='store_true', help='torch.compile the evaluated model (compiles once per run)')
    p.add_argument('--seed', type=int, default=0, help='selects images, pairs and contexts')
    p.add_argument('--devices', type=int, default=1, help='processes to spread the images over (DDP on CPU: gloo)')
    p.add_argument('--no-progress', action='store_true')
    from moga_lab.utils.tracking import add_tracking_arguments
    add_tracking_arguments(p, 'interaction')
    return p


def _settings(args, image_size: int):
    from moga_lab.analysis.estimate import default_settings
    s = default_settings(image_size)
    s.grid = args.grid or s.grid
    s.num_pairs = args.pairs or s.num_pairs
    s.num_contexts = args.contexts or s.num_contexts
    s.ratios = tuple(args.ratios)
    s.value, s.batch_size, s.bf16, s.seed = args.value, args.batch_size or s.batch_size, args.bf16, args.seed
    s.target_ci, s.max_forwards, s.fuse, s.compile = args.target_ci, args.max_forwards, not args.no_fuse, args.compile
    s.baseline = args.baseline
    apply_design_arguments(args, s)
    if s.target_ci is not None and not 0 < s.target_ci <= 1:
        raise ValueError(f'--target-ci={s.target_ci} is out of range; accepted: a fraction in (0, 1], e.g. 0.05')
    if s.max_forwards is not None and s.max_forwards < 4:
        raise ValueError(f'--max-forwards={s.max_forwards} must be >= 4 (one context costs up to 4 forward passes)')
    bad = [r for r in s.ratios if not 0 <= r <= 1]
    if bad:
        raise ValueError(f'--ratios {bad} out of range; accepted: numbers in [0, 1]')
    for name, v in (('--grid', s.grid), ('--pairs', s.num_pairs), ('--contexts', s.num_contexts),
                    ('--batch-size', s.batch_size)):
        if v < 1:
            raise ValueError(f'{name}={v} must be >= 1')
    return s


def _read_parts(out: str):
    import pandas as pd
    frames = []
    for path in sorted(glob.glob(os.path.join(out, PART_GLOB))):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, OSError):
            continue
        if 'J_abs' in frame.columns:  # parts written before moga_lab 1.0 are recomputed
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def run(args, rank: int = 0, world: int = 1, barrier=None, device='cpu') -> Optional[str]:
    """Compute this rank's share of (model, image) rows, then (rank 0) merge, curve, plot and record; the PNG path."""
    import torch
    with torch.no_grad():  # a scope, not torch.set_grad_enabled(False): a caller's autograd state is left as it was
        return _run(args, rank, world, barrier, device)


def _run(args, rank: int, world: int, barrier, device) -> Optional[str]:
    from moga_lab.analysis.estimate import per_image_target
    from moga_lab.loaders import load_eval_images, load_models, pixel_mean_image, write_image_list
    from moga_lab.utils.tracking import open_study_store
    import torch

    store = open_study_store(args.tracking_uri, args.experiment, not args.no_tracking) if rank == 0 else None
    models = load_models(model_sources(args), args.label, use_ema=not args.no_ema, trust=args.trust_weights)
    ev = load_eval_images(models, args.num_images, args.data, args.data_dir, args.seed,
                          per_class=args.one_per_class, transform=args.eval_transform)
    settings = _settings(args, ev.images.shape[-1])
    settings.target_ci = per_image_target(settings.target_ci, len(ev.ids), args.target_over)
    pixel_mean = (pixel_mean_image(models, args.data, args.data_dir, args.eval_transform)
                  if settings.baseline == 'pixel-mean' else None)
    for m in models:
        m.model.to(device).to(memory_format=torch.channels_last)
    settings = plan_from_arguments(args, [m.model for m in models], ev, settings, pixel_mean, args.out,
                                   say=rank == 0)
    os.makedirs(os.path.join(args.out, 'parts'), exist_ok=True)
    if rank == 0:
        for m in models:
            print(f'{m.name}: {m.source}', file=sys.stderr)
        print(f'images: {len(ev.ids)} from {ev.info.name}, {ev.info.transform}', file=sys.stderr)
        write_image_list(os.path.join(args.out, 'images.csv'), ev.ids, ev.labels, ev.info, ev.paths)
    _compute_part(args, models, ev, settings, pixel_mean, rank, world)
    if barrier is not None:
        barrier()
    if rank != 0:
        return None
    frame = _merge_parts(args.out, models, ev.ids)
    png = _write_curve(args, models, frame, ev, settings)
    _record(store, args, models, frame, ev, settings)
    return png


def _compute_part(args, models, ev, settings, pixel_mean, rank: int, world: int) -> None:
    """This rank's (model, image) rows not computed yet, appended to its part file one image at a time (the whole
    part replaced atomically: a stopped run loses at most the image in progress)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from moga_lab.analysis.estimate import evaluation_model, interaction_strength
    from moga_lab.analysis.tables import check_design
    from moga_lab.utils.atomic import atomic_write_csv
    part_path = os.path.join(args.out, 'parts', f'rank{rank}.csv')
    done = _read_parts(args.out)
    if done is not None:  # resuming across a change of design would mix two designs in one curve
        check_design(done, settings, args.out)
    done_keys = set(zip(done.model, done.image_id)) if done is not None else set()
    mine = pd.read_csv(part_path) if os.path.isfile(part_path) else None
    if mine is not None and 'J_abs' not in mine.columns:
        mine = None  # a part written before moga_lab 1.0: recomputed (see _read_parts)
    todo = [(k, i) for k, i in enumerate(ev.ids) if k % world == rank]
    work = [(k, i, m) for k, i in todo for m in models if (m.name, i) not in done_keys]
    if rank == 0 and done_keys:
        print(f'resuming: {len(done_keys)} (model, image) results already in {args.out}', file=sys.stderr)
    bar = tqdm(total=len(work), desc=f'interaction (rank {rank})' if world > 1 else 'interaction',
               unit='model-image', disable=args.no_progress)
    runners: Dict[str, Any] = {}  # fused (and compiled) once per model, not per image
    for k, image_id, m in work:
        runner = runners.setdefault(m.name, evaluation_model(m.model, settings))
        df = interaction_strength(runner, ev.images[k:k + 1], ev.labels[k:k + 1], settings, model_name=m.name,
                                  image_ids=[image_id], pixel_mean=pixel_mean, mean=ev.info.mean, std=ev.info.std)
        mine = df if mine is None else pd.concat([mine, df], ignore_index=True)
        atomic_write_csv(part_path, mine)
        bar.update(1)
    bar.close()


def _merge_parts(out: str, models, ids):
    """Every rank's rows of these models and images, once each: ``interaction.csv`` (and ``.parquet``)."""
    from moga_lab.utils.atomic import atomic_write_csv
    frame = _read_parts(out)
    frame = frame[frame.model.isin([m.name for m in models]) & frame.image_id.isin(ids)]
    frame = frame.drop_duplicates(['model', 'image_id', 'ratio'], keep='last').sort_values(['model', 'image_id', 'ratio'])
    atomic_write_csv(os.path.join(out, 'interaction.csv'), frame)
    try:
        frame.to_parquet(os.path.join(out, 'interaction.parquet'), index=False)
    except ImportError:
        pass
    return frame


def _write_curve(args, models, frame, ev, settings) -> str:
    """``curve.csv`` and the figure; prints the design, the precision reached and the middle shares."""
    from moga_lab.analysis.curves import middle_share_interval, strength_curve
    from moga_lab.analysis.tables import STATISTICS, describe_contexts
    from moga_lab.analysis.plots import plot_interaction_curves
    from moga_lab.utils.atomic import atomic_write_csv
    from moga_lab.cli.design import chosen_statistic
    args.statistic = chosen_statistic(frame, args.statistic)
    curve = strength_curve(frame, args.statistic)
    atomic_write_csv(os.path.join(args.out, 'curve.csv'), curve)
    png = os.path.join(args.out, 'interaction_curves.png')
    n_images = len(ev.ids)
    plot_interaction_curves(curve, png, title=f'Multi-order interaction strength ({args.statistic}): {ev.info.name}, '
                                              f'{n_images} images at {ev.images.shape[-1]} px, '
                                              f'{settings.grid}x{settings.grid} patches')
    print(f'budget: {describe_contexts(frame)}')
    for name, rel in _precision_reached(frame).items():
        print(f'{name}: Monte-Carlo precision of the curve over {n_images} images: 95 % half-width at most '
              f'{100 * rel:.1f} % of the value (given the images and pairs)')
    every = {statistic: middle_share_interval(frame, statistic).set_index('model') for statistic in STATISTICS}
    n = int(frame.n_players.iloc[0])
    for name in [m.name for m in models]:
        print(f'{name}: share of strength in middle orders (0.2n-0.6n, n={n}), 95 % bootstrap over images: '
              + '; '.join(f'{statistic} {100 * row.share:.1f} % [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]'
                          for statistic, row in ((st, table.loc[name]) for st, table in every.items())))
    print(f'wrote {args.out}/interaction.csv, curve.csv, interaction_curves.png, images.csv')
    return png


def _precision_reached(frame):
    from moga_lab.analysis.tables import image_set_precision
    return image_set_precision(frame).groupby('model', sort=False).half_width_rel.max()


def _record(store, args, models, frame, ev, settings) -> None:
    """Each model an MLflow run: the design as parameters; middle share, precision reached, forwards per image."""
    if store is None:
        return
    from moga_lab.analysis.curves import middle_order_share, strength_curve
    from moga_lab.utils.tracking import safe_record
    shares = middle_order_share(strength_curve(frame, args.statistic))
    reached = _precision_reached(frame)
    params = dict(images=len(ev.ids), data=ev.info.name, transform=ev.info.transform, grid=settings.grid,
                  pairs=settings.num_pairs, contexts=settings.num_contexts, ratios=list(settings.ratios),
                  target_ci=args.target_ci, target_over=args.target_over, max_forwards=settings.max_forwards,
                  statistic=args.statistic, value=settings.value, bf16=settings.bf16, seed=args.seed,
                  baseline=settings.baseline)
    files = [os.path.join(args.out, n) for n in ('interaction.csv', 'curve.csv', 'interaction_curves.png', 'images.csv')]
    for m in models:
        sub = frame[frame.model == m.name]
        safe_record(store, f'{os.path.abspath(args.out)}:{m.name}', {**params, 'model': m.name, 'weights': m.source},
                    dict(middle_share=shares[m.name], precision_half_width_rel=float(reached.get(m.name, float('nan'))),
                         forwards_per_image=float(sub.drop_duplicates('image_id').forwards.mean())),
                    artifacts=files, name=m.name, tags=dict(study='interaction'))
    print(f'recorded in {store.uri} (experiment {store.experiment!r})')


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse ``argv``, run, exit 2 with one line on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from moga_lab.utils.runtime import keep_freed_memory
    keep_freed_memory()  # speed only: freed tensor buffers stay in the heap (moga_lab/utils/runtime.py)
    try:
        if args.num_images < 1:
            raise ValueError(f'--num-images={args.num_images} must be >= 1')
        if args.devices < 1:
            raise ValueError(f'--devices={args.devices} must be >= 1')
        if args.devices == 1:
            run(args)
        else:
            import lightning as L
            fabric = L.Fabric(accelerator='auto', devices=args.devices, strategy='ddp')
            fabric.launch()
            run(args, fabric.global_rank, fabric.world_size, barrier=fabric.barrier, device=fabric.device)
    except user_errors() as error:
        fail(parser.prog, str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
