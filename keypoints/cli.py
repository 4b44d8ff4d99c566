"""Command lines: ``examples/train_keypoints.py`` (training) and ``python -m keypoints <command>``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .train import RECIPES, Recipe, load_training_checkpoint, recipe_from_dict, train

# flags that override a recipe field: flag dest -> Recipe field
_RECIPE_FLAGS = {
    "size": "size",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "loss": "loss",
    "val_fraction": "val_fraction",
    "seed": "seed",
    "flip_test": "flip_test",
    "dropout": "dropout",
}


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_keypoints.py",
        description="Train the 68-point facial keypoint network (tinynet NaimishNet) and evaluate it on the test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default", help="starting point; flags below override it")
    parser.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data; downloaded if absent)")
    parser.add_argument("--out", default="runs/keypoints", help="where checkpoints, plots and metrics go")
    parser.add_argument("--size", type=int, choices=(96, 224), help="input size S of the network")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--schedule", choices=("constant", "cosine"))
    parser.add_argument("--loss", choices=("mse", "l1", "smoothl1"))
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="flip, rotation/scale/shift and brightness/contrast augmentation (the default recipe's)")
    parser.add_argument("--val-fraction", type=float, help="held-out share of the training set used to pick the best epoch")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                        help="average each test prediction with the mirrored face's")
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--limit", type=int, help="use only the first N training (and test) faces: a quick run")
    parser.add_argument("--resume", help="continue from a last.npz checkpoint (same recipe; --epochs may grow)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return parser


def build_recipe(args: argparse.Namespace) -> Recipe:
    overrides = {field: getattr(args, flag) for flag, field in _RECIPE_FLAGS.items() if getattr(args, flag) is not None}
    if args.augment is not None:
        from .train import DEFAULT_AUGMENT

        overrides["augment"] = dict(DEFAULT_AUGMENT) if args.augment else {}
    if args.resume:
        saved = recipe_from_dict(load_training_checkpoint(args.resume)["meta"]["recipe"])
        changed = sorted(k for k, v in overrides.items() if k != "epochs" and getattr(saved, k) != v)
        if changed:
            raise SystemExit(f"--resume: the checkpoint's recipe fixes {', '.join(changed)}; only --epochs may change")
        return dataclasses.replace(saved, epochs=overrides.get("epochs", saved.epochs))
    base = RECIPES[args.recipe]
    name = base.name if not overrides else f"{base.name}+custom"
    return dataclasses.replace(base, name=name, **overrides)


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    try:
        recipe = build_recipe(args)
    except (OSError, TypeError, ValueError) as error:  # OSError: a --resume file that does not exist
        raise SystemExit(f"error: {error}") from None
    metrics = train(recipe, data=args.data, out=args.out, limit=args.limit, resume=args.resume, show_progress=not args.no_progress)
    from .metrics import format_metrics

    print(f"test ({'flip-averaged' if metrics['flip_test'] else 'single pass'}): {format_metrics(metrics)}")
    print(f"wrote {args.out}/best.npz, last.npz, loss_curve.png, test_faces.png, metrics.json")
    return 130 if metrics.get("interrupted") else 0


def evaluate_main(args: argparse.Namespace) -> int:
    from .data import ensure_data
    from .evaluate import evaluate_predictor
    from .metrics import format_metrics
    from .predictor import load_predictor

    predictor = load_predictor(args.checkpoint, flip=args.flip)  # a bad checkpoint fails before any download
    metrics = evaluate_predictor(predictor, ensure_data(args.data), limit=args.limit)
    metrics["checkpoint"] = str(args.checkpoint)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.checkpoint}: {format_metrics(metrics)}{' (flip-averaged)' if metrics['flip_test'] else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keypoints", description="Facial keypoints with tinynet.")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="test-set NME of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                          help="average with the mirrored face (default: as the checkpoint's recipe)")
    evaluate.add_argument("--limit", type=int, help="only the first N test faces")
    commands.add_parser("train", help="train (the same as examples/train_keypoints.py)", add_help=False)
    evaluate.set_defaults(func=evaluate_main)
    from .wild_cli import add_commands

    add_commands(commands)  # predict, filter, video, show-filters, show-maps, align
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "train":
        return train_main(argv[1:])
    args = parser.parse_args(argv)
    from .data import DownloadError

    try:
        return args.func(args)
    except (OSError, ValueError, DownloadError) as error:  # missing files, bad checkpoints, bad data, no network
        print(f"error: {error}", file=sys.stderr)
        return 2
