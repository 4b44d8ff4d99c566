"""Command lines: ``examples/train_keypoints.py`` (training) and ``python -m keypoints <command>``.

Every expected error ends in one line naming the file, row, flag or field, and an exit code
(:data:`EXIT_CODES`, shown by ``--help``); a traceback only with ``--debug``. Training reports bad input by
raising :class:`UsageError` (a ``SystemExit`` carrying the message), which :func:`run` (the entry points
``python -m keypoints`` and ``examples/train_keypoints.py``) turns into exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

from .checkpoint import read_checkpoint
from .recipes import RECIPES, Recipe, recipe_from_dict

EXIT_CODES = (
    "exit codes: 0 done; 1 a failure while running (training diverged, no face found, no network);"
    " 2 bad input: a flag, a data file, a photo or a model file (the message names it); 130 interrupted (Ctrl-C)"
)


class UsageError(SystemExit):
    """Bad input to a command: ``code`` is the one-line message (``"error: ..."``); :func:`run` exits with 2."""


def run(main, argv: list[str] | None = None) -> int:
    """Call ``main(argv)`` as a program does: a :class:`UsageError` is printed as one line with exit code 2.
    At a terminal, the first run on a machine says which tinynet kernels Numba compiles while it does
    (``tinynet.report_compilation``); logs and pipes get nothing of it."""
    if sys.stderr.isatty():
        import tinynet

        tinynet.report_compilation(sys.stderr)
    try:
        return main(argv)
    except UsageError as error:
        print(error.code, file=sys.stderr)
        return 2


def _number(kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False):
    """An argparse ``type`` for a finite number within ``[low, high]`` (``(`` / ``)`` where open)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "-inf" if low is None else f"{low:g}"
            right = "inf" if high is None else f"{high:g}"
            interval = f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
            raise argparse.ArgumentTypeError(f"expected a value in {interval}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


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
    "head": "head",
    "refine_passes": "refine_passes",
    "ema": "ema",
    "closeup": "closeup",
    "closeup_epochs": "closeup_epochs",
}


def train_parser(prog: str = "train_keypoints.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the facial keypoint network (tinynet NaimishNet) on the 68-point data set or on your own"
                    " .pts annotations, and evaluate it on the test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=EXIT_CODES,
    )
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default", help="starting point; flags below override it")
    parser.add_argument("--data", help="data folder (csv: else $KEYPOINTS_DATA, else ./data, downloaded if absent;"
                        " pts: required)")
    parser.add_argument("--format", dest="data_format", choices=("csv", "pts"), default="csv",
                        help="csv: the 68-point keypoint data set; pts: images with iBUG .pts files beside them,"
                        " any number of points (DIR/train and DIR/test if present, else a fixed 10 %% held out for test)")
    parser.add_argument("--flip-file", metavar="FILE",
                        help="how the points swap sides in a mirror: K 0-based indices, the i-th naming the point"
                        " that plays point i on the mirrored face (default: the iBUG one for 68 points; for other"
                        " counts none, and flip augmentation and flip averaging are off)")
    parser.add_argument("--out", default="runs/keypoints", help="where checkpoints, plots and metrics go")
    parser.add_argument("--size", type=int, choices=(96, 224), help="input size S of the network")
    parser.add_argument("--epochs", type=_number(int, 1))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=_number(float, 0, low_open=True), help="peak learning rate")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    parser.add_argument("--weight-decay", type=_number(float, 0))
    parser.add_argument("--schedule", choices=("constant", "cosine"))
    parser.add_argument("--loss", choices=("mse", "l1", "smoothl1", "wing"))
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="flip, rotation/scale/shift and brightness/contrast augmentation (the default recipe's)")
    parser.add_argument("--val-fraction", type=_number(float, 0, 1, high_open=True), help="held-out share of the training set used to pick the best epoch")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                        help="average each test prediction with the mirrored face's")
    parser.add_argument("--dropout", type=_number(float, 0, 1, high_open=True))
    parser.add_argument("--head", choices=("classic", "dropout-last"),
                        help="classic: a dropout after each hidden layer; dropout-last: one, after the last batch norm")
    parser.add_argument("--refine-passes", type=_number(int, 0, 4),
                        help="prediction frames the face again from its own points this many times (0-4)")
    parser.add_argument("--closeup", nargs="*", choices=("eyes", "mouth"), metavar="REGION",
                        help="regions (eyes, mouth) that networks of their own read up close after the face network"
                        " (keypoints.closeup); give none for no close-up stage")
    parser.add_argument("--closeup-epochs", type=_number(int, 1, 500), help="epochs of each close-up stage")
    parser.add_argument("--ema", type=_number(float, 0, 1, high_open=True), help="keep an exponential moving average of the weights with this decay (0: off)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--limit", type=_number(int, 1), help="use only the first N training (and test) faces: a quick run")
    parser.add_argument("--resume", help="continue from a last.npz checkpoint (same recipe; --epochs may grow);"
                        " in its own folder it continues in place")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier run in --out (without it, a folder holding a run is refused)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def build_recipe(args: argparse.Namespace, resumed: dict | None = None) -> Recipe:
    """The recipe the flags ask for; with ``--resume``, the checkpoint's own (``resumed``: that checkpoint if
    already read, else it is read here), of which only ``--epochs`` may change."""
    overrides = {field: getattr(args, flag) for flag, field in _RECIPE_FLAGS.items() if getattr(args, flag) is not None}
    if "closeup" in overrides:
        overrides["closeup"] = tuple(overrides["closeup"])  # as the recipe holds it
    if args.augment is not None:
        from .recipes import DEFAULT_AUGMENT

        overrides["augment"] = dict(DEFAULT_AUGMENT) if args.augment else {}
    if args.resume:
        resumed = read_checkpoint(args.resume, training=True)[0] if resumed is None else resumed
        saved = recipe_from_dict(resumed["meta"]["recipe"])
        changed = sorted(k for k, v in overrides.items() if k != "epochs" and getattr(saved, k) != v)
        if changed:  # a ValueError: train_main ends with one line and exit code 2
            raise ValueError(
                f"--resume {args.resume}: the checkpoint's recipe fixes "
                + ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
                + "; the flags ask for " + ", ".join(f"{k}={overrides[k]!r}" for k in changed)
                + " (a run continues with its own recipe: only --epochs may change)"
            )
        return dataclasses.replace(saved, epochs=overrides.get("epochs", saved.epochs))
    base = RECIPES[args.recipe]
    name = base.name if not overrides else f"{base.name}+custom"
    return dataclasses.replace(base, name=name, **overrides)


def train_main(argv: list[str] | None = None, prog: str = "train_keypoints.py") -> int:
    """Parse, train, report. Bad input raises :class:`UsageError`; a failed download of the data set returns
    1 after one line (as ``python -m keypoints evaluate``); Ctrl-C returns 130 after one line saying what was
    saved and how to resume."""
    from .data import DataError, DownloadError
    from .files import OutputError
    from .train import train  # here: the other commands need none of training's imports

    parser = train_parser(prog)  # usage and errors name the command the user typed
    args = parser.parse_args(argv)
    resumed = None
    try:
        resumed = read_checkpoint(args.resume, training=True)[0] if args.resume else None  # read once
        recipe = build_recipe(args, resumed)
    except (OSError, TypeError, ValueError) as error:  # OSError: a --resume file that does not exist
        if args.debug:
            raise
        raise UsageError(f"error: {error}") from None
    if args.limit is not None:
        train_faces = args.limit - int(round(recipe.val_fraction * args.limit))
        if train_faces < recipe.batch_size:
            parser.error(f"--limit {args.limit} leaves {train_faces} training faces (after the validation share"
                         f" {recipe.val_fraction:g}), fewer than one batch of {recipe.batch_size}; raise --limit or"
                         " lower --batch-size")
    try:
        metrics = train(recipe, data=args.data, out=args.out, limit=args.limit, resume=args.resume,
                        show_progress=not args.no_progress, overwrite=args.overwrite, resumed=resumed,
                        data_format=args.data_format, flip_file=args.flip_file)
    except (DataError, OutputError, ValueError, OSError) as error:  # bad data, --out, --resume, --data
        if args.debug:
            raise
        raise UsageError(f"error: {error}") from None
    except DownloadError as error:  # no network: a failure while running, not a usage error
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside the epoch loop (which reports its own): preparing data, final evaluation
        if args.debug:
            raise
        print(f"\ninterrupted; {interrupted_note(args.out)}", file=sys.stderr)
        return 130
    from .metrics import format_metrics

    print(f"test ({describe_reads(metrics) or 'single pass'}): {format_metrics(metrics)}")
    print(f"wrote {args.out}/best.npz, last.npz, loss_curve.png, test_faces.png, metrics.json")
    return 130 if metrics.get("interrupted") else 0


def interrupted_note(out) -> str:
    """What a run interrupted outside an epoch left in ``out`` and how to go on."""
    from pathlib import Path

    last = Path(out) / "last.npz"
    if last.is_file():
        return f"{last} holds the last finished epoch: continue with --resume {last}"
    return "no epoch had finished, nothing was saved"


def describe_reads(metrics: dict) -> str:
    """How an evaluation read the faces, from its metrics: "flip-averaged, 2 refinement pass(es), ..." ("": one
    plain read)."""
    how = ["flip-averaged"] if metrics["flip_test"] else []
    how += [f"{metrics['refine_passes']} refinement pass(es)"] if metrics["refine_passes"] else []
    if metrics["refine_passes"] and metrics.get("refine_tolerance"):
        how[-1] += f" (not where the frame moves less than {100 * metrics['refine_tolerance']:g} % of the crop)"
    if metrics["refine_passes"] and metrics["test_frames"]:
        how += [f"{len(metrics['test_frames'])} test frames in the last pass"]
    how += [f"close-up {name} x{passes}" for name, passes in metrics["closeup"].items()]
    how += ["int8 Linear layers"] if metrics.get("int8_linears") else []
    return ", ".join(how)


def evaluate_main(args: argparse.Namespace) -> int:
    from .data import ensure_data
    from .evaluate import evaluate_predictor
    from .metrics import format_metrics
    from .predictor import load_predictor

    # a bad checkpoint fails before any download
    predictor = load_predictor(args.checkpoint, flip=args.flip, refine_passes=args.refine_passes,
                               test_frames=() if args.no_test_frames else None, closeup_passes=args.closeup_passes,
                               speed=args.speed, refine_tolerance=args.refine_tolerance)
    if args.data_format == "pts" and args.data is None:
        raise ValueError("--format pts needs --data DIR, the folder of images with .pts files beside them")
    data_dir = ensure_data(args.data) if args.data_format == "csv" else args.data
    metrics = evaluate_predictor(predictor, data_dir, limit=args.limit, data_format=args.data_format)
    metrics["checkpoint"] = str(args.checkpoint)
    broken = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if broken:  # never print "NME nan %" as if it were a result
        print(f"error: {args.checkpoint}: the evaluation gave non-finite {', '.join(broken)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(metrics))
    else:
        how = describe_reads(metrics)
        print(f"{args.checkpoint}: {format_metrics(metrics)}{f' ({how})' if how else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keypoints", description="Facial keypoints with tinynet.",
                                     epilog=EXIT_CODES)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="test-set NME of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    evaluate.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data)")
    evaluate.add_argument("--format", dest="data_format", choices=("csv", "pts"), default="csv",
                          help="csv: the 68-point data set; pts: the test split of a folder of .pts files (as training)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                          help="average with the mirrored face (default: as the checkpoint's recipe)")
    evaluate.add_argument("--limit", type=int, help="only the first N test faces")
    evaluate.add_argument("--refine-passes", type=int, choices=range(5), metavar="{0..4}",
                          help="re-frame each face from its own points this many times (default: as the checkpoint)")
    evaluate.add_argument("--refine-tolerance", type=_number(float, 0, 1, high_open=True), metavar="T",
                          help="read a face again only where its refinement frame moves the crop's corners by T of its"
                          " side or more (default: 0, every face; --speed fast: 0.05)")
    evaluate.add_argument("--no-test-frames", action="store_true",
                          help="the last pass reads the canonical frame only, not the checkpoint's test frames")
    evaluate.add_argument("--closeup-passes", type=int, choices=range(5), metavar="{0..4}",
                          help="read the eyes and mouth up close this many times (default: as the checkpoint's close-up"
                          " stages; 0: off)")
    from .speed import SPEEDS

    evaluate.add_argument("--speed", choices=SPEEDS, default="accurate",
                          help="fast: the predictor settings of predict --speed fast (the flags above override them)")
    commands.add_parser("train", help="train (the same as examples/train_keypoints.py)", add_help=False)
    evaluate.set_defaults(func=evaluate_main)
    from .wild.cli import add_commands

    add_commands(commands)  # predict, filter, video, show-filters, show-maps, align
    from .export import add_export_command

    add_export_command(commands)  # export: the network as an ONNX file
    if argv is None:
        argv = sys.argv[1:]
    skip = 1 if argv[:1] == ["--debug"] else 0  # --debug goes before or after the command
    if argv[skip : skip + 1] == ["train"]:
        return train_main(argv[skip + 1 :] + argv[:skip], prog="python -m keypoints train")
    args = parser.parse_args(argv)
    from .wild.commands import resolve_speed

    resolve_speed(args)  # the photo commands' --detector default follows --speed
    from .data import DownloadError

    try:
        return args.func(args)
    except (OSError, ValueError) as error:  # missing files, bad checkpoints, bad data, bad outputs
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DownloadError as error:  # no network: a failure while running
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ninterrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
