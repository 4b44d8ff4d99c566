"""The face-toolkit parts of ``python -m keypoints``: the ``align`` command, and ``predict``'s output
options (``--format``, ``--json -``, ``--pose``, ``--min-confidence``) and how it runs many photos
(``--workers``, ``--scheduler``: :mod:`keypoints.batch`), registered by :mod:`keypoints.wild.cli`."""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from .formats import FORMATS, JsonlStream, write_pts_files, write_table


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_predict_outputs(parser: argparse.ArgumentParser) -> None:
    """``predict``'s options for what it writes besides the picture."""
    parser.add_argument("--json", metavar="OUT",
                        help="write every face (box, crop, confidence, pose, eyes, points) to this file in --format;"
                             " '-' writes to standard output (messages then go to standard error)")
    parser.add_argument("--format", choices=FORMATS, default="json",
                        help="json: one document; jsonl: one photo a line; csv: one face a row; pts: iBUG .pts"
                             " files beside each photo, or in the -o folder (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="--format pts: replace .pts files beside the photos; --format jsonl: start the --json"
                             " file afresh instead of resuming it")
    parser.add_argument("--pose", action="store_true", help="draw each face's head-pose axes on the picture")
    parser.add_argument("--min-confidence", type=_probability, metavar="C",
                        help="keep only faces whose confidence is at least C (0..1; not with --speed fast or"
                             " --no-flip, which do not read faces as the confidence was calibrated)")


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (``--workers``, ``--max-side``, ``--max-pixels``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_common_options(parser: argparse.ArgumentParser, detector: bool = True, photo: bool = True) -> None:
    """``--model``; with ``detector`` the detection flags; with ``photo`` (a command reading an image)
    ``--max-pixels``."""
    from ..image import DEFAULT_MAX_PIXELS
    from ..speed import SPEEDS
    from .detection import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, DETECTORS, FAST_DETECTOR

    # SUPPRESS: given before the command (python -m keypoints --debug predict ...) it is not reset here
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    parser.add_argument("--model", metavar="CKPT",
                        help="a checkpoint written by training (best.npz); default: the model that ships with keypoints")
    if detector:
        parser.add_argument("--speed", choices=SPEEDS, default="accurate",
                            help="fast: two reads of each face instead of twelve, no flip averaging or test frames"
                                 " (so no confidence), the close-up stages once, int8 weights in the Linear layers,"
                                 f" and the detector --detector {FAST_DETECTOR}; about 3x faster, a little less"
                                 " accurate (default %(default)s)")
        parser.add_argument("--detector", choices=sorted(DETECTORS),
                            help=f"face detector (default {DEFAULT_DETECTOR}; {FAST_DETECTOR} with --speed fast)")
        parser.add_argument("--max-side", type=positive_int, default=DEFAULT_MAX_SIDE,
                            help="larger photos are shrunk to this longest side for detection only"
                                 " (default %(default)s)")
        parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                            help="average with the mirrored face (default: as the checkpoint's recipe)")
    if photo:
        parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                            help="pixel limit checked before decoding: a larger JPEG photo is decoded at 1/2, 1/4"
                                 " or 1/8 size if that fits, other images (and video frames) are refused"
                                 " (default %(default)s)")


def resolve_speed(args: argparse.Namespace) -> None:
    """After parsing: a photo command without ``--detector`` gets the detector of its ``--speed``."""
    from .detection import DEFAULT_DETECTOR, FAST_DETECTOR

    if hasattr(args, "speed") and getattr(args, "detector", None) is None:
        args.detector = FAST_DETECTOR if args.speed == "fast" else DEFAULT_DETECTOR


# ----------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------


def workers_count(text: str) -> int | str:
    """An argparse type: ``auto`` or a positive integer (``--workers``)."""
    return "auto" if text == "auto" else positive_int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """``predict``'s options for many photos (:mod:`keypoints.batch`)."""
    from ..batch import AUTO_WORKERS_MIN_PHOTOS, DEFAULT_CONNECT_TIMEOUT

    parser.add_argument("--workers", type=workers_count, default="auto", metavar="N",
                        help="N worker processes, each loading the model once, with cores/N threads; same records,"
                             " same order as 1 (default auto: one per core for more than"
                             f" {AUTO_WORKERS_MIN_PHOTOS} photos, else this process)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on a Dask cluster (pip install -e '.[dask]'); the photos, -o and --model must be"
                             " at the same paths on its workers")
    parser.add_argument("--scheduler-timeout", type=_seconds, default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                        help="give up when the scheduler does not answer within S seconds (default %(default)s)")


def connect_scheduler(args: argparse.Namespace):
    """A Dask client for ``--scheduler`` (None without it); ``ImportError``/``ConnectionError``/``ValueError``
    with the one-line reason otherwise."""
    if args.scheduler is None:
        return None
    if args.workers != "auto":
        raise ValueError("--workers runs processes on this machine, --scheduler on a Dask cluster: choose one")
    from ..batch.cluster import connect

    return connect(args.scheduler, args.scheduler_timeout)


def run_settings(args: argparse.Namespace, flip: bool) -> dict:
    """What decides a photo's record, kept beside a JSON Lines output so that resuming it with another model
    or other settings is refused: the model (by content), the detector and the limits."""
    from ..predictor import PRETRAINED

    model = PRETRAINED if args.model is None else Path(args.model)
    return {"model": str(model), "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "detector": args.detector, "max_side": args.max_side, "max_pixels": args.max_pixels, "flip": flip,
            "speed": args.speed,
            "min_confidence": args.min_confidence}


def open_jsonl(args: argparse.Namespace, flip: bool) -> JsonlStream | None:
    """``--format jsonl``: the stream its records are appended to as photos finish (None for other formats)."""
    if args.format != "jsonl":
        return None
    return JsonlStream(args.json, run_settings(args, flip), overwrite=args.overwrite)


def check_predict_outputs(args: argparse.Namespace, predictor, several: bool) -> None:
    """The option combinations ``predict`` cannot honour, as ``ValueError`` before any work."""
    if args.format in ("jsonl", "csv") and not args.json:
        raise ValueError(f"--format {args.format} writes to the --json target: add --json OUT (or --json - for stdout)")
    if args.format == "pts" and args.json:
        raise ValueError("--format pts writes .pts files beside the photos (or into -o DIR), not to --json")
    reason = None if args.min_confidence is None else predictor.no_confidence_reason
    if reason is not None:
        fix = (" (use the default --speed accurate)" if getattr(args, "speed", None) == "fast"
               else " (drop --flip/--no-flip)" if getattr(args, "flip", None) is not None else "")
        raise ValueError(f"--min-confidence needs the confidence: {reason}{fix}")


def pts_folder(args: argparse.Namespace, several: bool) -> Path | None:
    """``--format pts``: the ``-o`` folder when there is one (several inputs or an existing folder), else
    None (beside each photo)."""
    if args.output is None:
        return None
    target = Path(args.output)
    return target if several or target.is_dir() or str(args.output).endswith(("/", os.sep)) else None


def confident(faces: list, min_confidence: float | None) -> list:
    """The faces whose confidence reaches ``min_confidence`` (all of them when it is None)."""
    if min_confidence is None:
        return list(faces)
    return [face for face in faces if face.confidence is not None and face.confidence >= min_confidence]


def draw_poses(picture: np.ndarray, faces: list) -> np.ndarray:
    """Each face's head-pose axes on ``picture`` (a face whose pose fit is degenerate gets none)."""
    from .pose import PoseError, draw_pose, head_pose

    for face in faces:
        try:
            picture = draw_pose(picture, head_pose(face.points, picture.shape))
        except PoseError:
            continue
    return picture


def write_predict_outputs(args: argparse.Namespace, records: list[dict], summary: dict, several: bool) -> list[str]:
    """Write ``--json``/``--format`` outputs; returns the problems (a .pts file that would replace an
    annotation) as messages, and raises ``OSError`` for a target that cannot be written."""
    from ..predictor import PRETRAINED

    header = {"model": str(PRETRAINED if args.model is None else args.model), "detector": args.detector}
    problems = []
    if args.format == "pts":
        folder = pts_folder(args, several)
        for record in records:
            if record["faces"]:
                try:
                    record["pts"] = [str(p) for p in write_pts_files(record, folder, overwrite=args.overwrite)]
                except FileExistsError as exc:
                    problems.append(str(exc))
    elif args.json and args.format != "jsonl":  # JSON Lines went out line by line (open_jsonl)
        write_table(records, args.format, args.json, header, summary)
    return problems


# ----------------------------------------------------------------------------------------------------
# align
# ----------------------------------------------------------------------------------------------------


def align_command(args: argparse.Namespace) -> int:
    """``align PHOTO... -o DIR --size 112``: one aligned chip per face, ``DIR/<stem>_<k>.png``."""
    from .faces import predict_faces
    from ..files import OutputError, refuse_input_as_output, write_image
    from ..engine import choose_engine, engine_flags
    from .cli import _error, load_model
    from .align import align_faces
    from .photos import InputError, expand_inputs, read_photo

    try:
        predictor = load_model(args.model, args.flip, args.speed)
        files, _ = expand_inputs(args.photos)
        folder = Path(args.output)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"-o {folder}: expected a folder for the chips, and this is a file")
        if args.size < 16:
            raise ValueError(f"--size must be at least 16 pixels, got {args.size}")
        if not args.min_eye_distance >= 0:  # also refuses NaN
            raise ValueError(f"--min-eye-distance must be a number of pixels >= 0, got {args.min_eye_distance}")
    except (FileNotFoundError, ValueError, OSError) as exc:
        _error(str(exc))
        return 2
    written, failures = 0, []
    engine = choose_engine(args.engine, len(files))
    for file in files:
        try:
            image, _, _ = read_photo(file, args.max_pixels)  # a JPEG over --max-pixels: chips from its reduced decode
            with engine_flags(engine):
                faces = predict_faces(predictor, image, detector=args.detector, max_side=args.max_side)
            if not faces:
                raise InputError(file, "no face found")
            for k, aligned in enumerate(align_faces(image, faces, args.size, args.min_eye_distance)):
                if aligned.chip is None:
                    failures.append(f"{file}: face {k}: {aligned.error}")
                    _error(failures[-1])
                    continue
                path = folder / f"{file.stem}_{k}.png"
                refuse_input_as_output(path, files)
                write_image(path, aligned.chip)
                written += 1
                print(f"{file}: face {k} -> {path}")
        except OutputError as exc:  # the chips' folder cannot be written: every further chip would fail too
            _error(str(exc))
            return 2
        except (InputError, ValueError, cv2.error) as exc:
            failures.append(str(exc) if isinstance(exc, InputError) else f"{file}: {exc}")
            _error(failures[-1])
    print(f"{written} chip{'s' if written != 1 else ''} {args.size}x{args.size} -> {folder}"
          + (f"; {len(failures)} problem{'s' if len(failures) != 1 else ''}" if failures else ""))
    return 0 if written else 1


def add_blink_options(parser: argparse.ArgumentParser) -> None:
    """``video``'s blink counter settings (:class:`keypoints.wild.blink.BlinkCounter`)."""
    from .blink import EAR_THRESHOLD, MIN_CLOSED_FRAMES

    parser.add_argument("--blink-threshold", type=float, default=EAR_THRESHOLD,
                        help="eye aspect ratio below which an eye counts as closed (default %(default)s)")
    parser.add_argument("--blink-frames", type=int, default=MIN_CLOSED_FRAMES,
                        help="consecutive closed frames that make a blink (default %(default)s)")


def add_align_command(subparsers, common) -> None:
    """Register ``align`` (``common(parser)`` adds the model and detector options)."""
    from .align import MIN_EYE_DISTANCE

    p = subparsers.add_parser("align", help="aligned face chips (eyes and mouth on a fixed template)",
                              description="Detect faces, predict keypoints, and write one upright, scaled face chip"
                                          " per face (ArcFace template: eye centres and mouth centre).")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files and/or folders of images")
    common(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the chips: <stem>_<face>.png")
    p.add_argument("--size", type=int, default=112, help="side of the square chips in pixels (default %(default)s)")
    p.add_argument("--min-eye-distance", type=float, default=MIN_EYE_DISTANCE, metavar="PX",
                   help="skip (and name) faces whose eye centres are closer than this in the photo: their chip"
                        " would be mostly interpolation (default %(default)s)")
    from ..engine import AUTO_NUMPY_MAX_PHOTOS, add_engine_option

    add_engine_option(p, f"numpy for up to {AUTO_NUMPY_MAX_PHOTOS} photos, numba for more")
    p.set_defaults(func=align_command)


class _NoProgressBar:
    """What ``predict`` needs of a progress bar when none is shown (tqdm takes 50 ms to import)."""

    def update(self) -> None:
        pass

    def write(self, text: str, file) -> None:
        print(text, file=file)

    def close(self) -> None:
        pass


def progress_bar(total: int, shown: bool):
    """A tqdm bar over ``total`` images, or a stand-in that only prints the messages when not ``shown``."""
    if not shown:
        return _NoProgressBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="image")


def print_to(args: argparse.Namespace):
    """Where ``predict`` prints its messages: standard error when the data goes to standard output."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout
