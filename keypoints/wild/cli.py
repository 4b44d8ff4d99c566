"""Command lines for keypoints in the wild: ``python -m keypoints predict | filter | video | align | show-filters | show-maps``.

``add_commands(subparsers)`` registers the six commands (``align`` and predict's output options: in
:mod:`keypoints.wild.commands`); each sets ``func`` so the main program runs ``args.func(args)``, which
returns the exit code. ``main(argv)`` runs them on their own (``python -m keypoints.wild.cli predict ...``).

Exit codes
----------
0   done (for ``predict``: at least one input image gave at least one face, or every photo was already in
    the ``--format jsonl`` file being resumed);
1   ``predict``: *every* input failed (unreadable, not an image, or no face found). A batch with some
    failures still exits 0: each failure is reported as it happens and listed again at the end, and a
    folder of holiday photos with one cat picture in it should not fail a script. ``filter``: no face;
2   a usage problem that stops everything: a missing or invalid model file, an unreadable overlay or
    video, a bad layer name, a ``--scheduler`` that does not answer within ``--scheduler-timeout``, a
    ``--format jsonl`` file written with another model or settings;
130 interrupted (Ctrl-C); ``--format jsonl`` keeps every line written: the same command resumes it.

A photo whose worker process dies while reading it (``--workers``, ``--scheduler``) fails like an
unreadable photo: reported, recorded with the reason, and the batch goes on in a fresh worker.

Photos are read by ``keypoints.wild.photos.read_photo``: the EXIF orientation applied, so points refer to the
picture as a viewer shows it; a JPEG over ``--max-pixels`` (read from the header) is decoded at 1/2, 1/4 or
1/8 size if that fits, with the points mapped back to its pixels; other photos over it are refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..engine import AUTO_NUMPY_MAX_PHOTOS, add_engine_option, choose_engine, engine_flags
from ..files import OutputError, check_image_output, refuse_input_as_output, write_image
from .commands import add_common_options, resolve_speed
from .photos import expand_inputs, output_paths, read_photo

# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _error(message: str, args: argparse.Namespace | None = None) -> None:
    """Print one ``error:`` line; with ``--debug``, called in an ``except`` block, re-raise that exception."""
    if args is not None and getattr(args, "debug", False):
        raise  # the exception the caller is handling, traceback and all
    print(f"error: {message}", file=sys.stderr)


def load_model(path: str | None, flip: bool | None = None, speed: str = "accurate", refine_tolerance: float | None = None):
    """``load_predictor`` with a clear message for a missing file; None is the shipped model."""
    from ..predictor import PRETRAINED, load_predictor

    path = PRETRAINED if path is None else path
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such model file (train one with examples/train_keypoints.py)")
    return load_predictor(path, flip=flip, speed=speed, refine_tolerance=refine_tolerance)


def predict_command(args: argparse.Namespace) -> int:
    """``predict PHOTO...``: detect the faces, predict, draw, summarise; each photo through
    :func:`keypoints.batch.predict_photo`, here or in ``--workers`` processes or on a ``--scheduler`` cluster."""
    import dataclasses

    from ..batch import PredictOptions, WorkerStartError, choose_workers, iter_predictions
    from ..batch.ahead import FacesAhead
    from . import commands

    info = commands.print_to(args)
    stream = client = ahead = None
    try:
        options = PredictOptions(model=args.model, flip=args.flip, speed=args.speed, detector=args.detector,
                                 max_side=args.max_side, max_pixels=args.max_pixels, min_confidence=args.min_confidence,
                                 indices=args.indices, boxes=not args.no_boxes, pose=args.pose)
        files, several = expand_inputs(args.photos)
        in_process = args.scheduler is None and choose_workers(args.workers, len(files)) == 1
        if files and in_process and args.format != "jsonl":
            # the first photo is read and its faces found on another thread while the model loads (a JSON Lines run
            # may resume past it: it starts once the stream has said which photos are left)
            ahead = FacesAhead(options)
            ahead.start(files[0])
        predictor = load_model(args.model, args.flip, args.speed)
        photos_in_run = len(files)  # auto's engine follows the whole run, also when a resumed one has fewer left
        commands.check_predict_outputs(args, predictor, several)
        outputs = output_paths(files, several, args.output, "_keypoints")
        if args.json and args.json != "-":
            refuse_input_as_output(args.json, files + outputs, flag="--json")
        stream = commands.open_jsonl(args, predictor.flip)
        client = commands.connect_scheduler(args)
    except (FileNotFoundError, ValueError, OSError, ImportError) as exc:  # ConnectionError is an OSError
        if stream is not None:
            stream.close()
        if ahead is not None:
            ahead.close()
        _error(str(exc), args)
        return 2
    if not files:
        _error(f"no image files in {', '.join(args.photos)}")
        return 1
    skipped = 0
    if stream is not None:
        for note in stream.notes:
            print(note, file=info)
        remaining = [k for k, file in enumerate(files) if str(file) not in stream.done]
        skipped = len(files) - len(remaining)
        files, outputs = [files[k] for k in remaining], [outputs[k] for k in remaining]
        if skipped:
            print(f"skipping {skipped} photo{'s' if skipped != 1 else ''} already in {args.json}", file=info)
        if not files:
            stream.close()
            if client is not None:
                client.close()
            print(f"nothing to do: every photo is already in {args.json}", file=info)
            return 0
    # resolved here, from every photo of the run (iter_predictions would take the photos still to do: a resumed
    # run could then switch engine and write its last decimals differently), and said under --verbose
    options = dataclasses.replace(options, engine=choose_engine(args.engine, photos_in_run))
    workers = 1 if client is not None else choose_workers(args.workers, len(files))
    if args.verbose:
        print(f"engine: {options.engine} ({args.engine}, {photos_in_run} photo{'s' if photos_in_run != 1 else ''});"
              f" {'a Dask cluster' if client is not None else f'{workers} process' + ('es' if workers != 1 else '')}"
              f" ({args.workers if client is None else '--scheduler'})", file=info)
    records, failures = [], []
    faces_total, images_with_faces = 0, 0
    detect_seconds = keypoint_seconds = 0.0
    detected_images = 0
    bar = commands.progress_bar(len(files), shown=not args.no_progress and len(files) > 1)
    try:
        for result, output in zip(iter_predictions(files, options, outputs=outputs, workers=workers,
                                                   client=client, predictor=predictor, ahead=ahead), outputs):
            bar.update()
            records.append(result.record)
            if stream is not None:
                stream.write(result.record)
            if result.detect_seconds is not None:
                detect_seconds += result.detect_seconds
                detected_images += 1
            if result.failure is not None:
                failures.append(result.failure)
                bar.write(f"warning: {result.failure}", file=sys.stderr)
                continue
            keypoint_seconds += result.keypoint_seconds
            faces_total += result.faces
            images_with_faces += 1
            if len(files) == 1 or args.verbose:
                bar.write(f"{result.record['path']}: {result.faces} face{'s' if result.faces != 1 else ''}"
                          + (f" (decoded at 1/{result.factor} size)" if result.factor > 1 else "")
                          + (f" -> {output}" if output is not None else ""), file=info)
    except WorkerStartError as exc:
        _error(str(exc), args)
        return 1
    except KeyboardInterrupt:
        if getattr(args, "debug", False) or stream is None or args.json == "-":
            raise
        print(f"\ninterrupted; {len(records)} photo{'s' if len(records) != 1 else ''} of this run recorded in"
              f" {args.json}: run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        bar.close()
        if stream is not None:
            stream.close()
        if client is not None:
            client.close()
        if ahead is not None:
            ahead.close()

    ms_detect = 1000.0 * detect_seconds / detected_images if detected_images else float("nan")
    ms_face = 1000.0 * keypoint_seconds / faces_total if faces_total else float("nan")
    summary = {
        "images": len(files),
        "images_with_faces": images_with_faces,
        "faces": faces_total,
        "failed": len(failures),
        "detection_ms_per_image": round(ms_detect, 2) if detected_images else None,
        "keypoints_ms_per_face": round(ms_face, 2) if faces_total else None,
    }
    try:
        failures += commands.write_predict_outputs(args, records, summary, several)
    except OutputError as exc:
        _error(str(exc), args)
        return 2
    print(
        f"{len(files)} image{'s' if len(files) != 1 else ''}, {faces_total} face{'s' if faces_total != 1 else ''}"
        f" in {images_with_faces}; detection {ms_detect:.1f} ms per image, keypoints {ms_face:.1f} ms per face"
        + (f"; {skipped} skipped (already in {args.json})" if skipped else ""),
        file=info,
    )
    if failures:
        print(f"{len(failures)} of {len(files)} input{'s' if len(files) != 1 else ''} failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
    return 1 if files and len(failures) == len(files) else 0


def filter_command(args: argparse.Namespace) -> int:
    """``filter PHOTO --sunglasses``: sunglasses on every face."""
    from .drawing import draw_keypoints
    from .faces import predict_faces
    from .overlay import add_sunglasses, load_overlay, make_sunglasses

    if not args.sunglasses and args.overlay is None:
        _error("choose a filter: --sunglasses (optionally with --overlay FILE.png)")
        return 2
    try:
        refuse_input_as_output(args.output, [args.photo, args.overlay, args.model])
        check_image_output(args.output)
        predictor = load_model(args.model, args.flip, args.speed)
        overlay = load_overlay(args.overlay) if args.overlay else make_sunglasses()
        image, factor, _ = read_photo(args.photo, args.max_pixels)  # the picture written is the decoded one
    except (FileNotFoundError, ValueError, OSError) as exc:
        _error(str(exc), args)
        return 2
    with engine_flags(choose_engine(args.engine, 1)):
        faces = predict_faces(predictor, image, detector=args.detector, max_side=args.max_side)
    if not faces:
        _error(f"{args.photo}: no face found, nothing written")
        return 1
    points = np.stack([face.points for face in faces])
    out = add_sunglasses(image, points, overlay, width_scale=args.width_scale)
    if args.points:
        out = draw_keypoints(out, points)
    try:
        write_image(args.output, out)
    except OutputError as exc:
        _error(str(exc), args)
        return 2
    reduced = f" (decoded at 1/{factor} size)" if factor > 1 else ""
    print(f"{args.photo}: sunglasses on {len(faces)} face{'s' if len(faces) != 1 else ''}{reduced} -> {args.output}")
    return 0


def video_command(args: argparse.Namespace) -> int:
    """``video IN.mp4 -o OUT.mp4``: keypoints (or sunglasses) on every frame, smoothed per face."""
    from ..speed import VIDEO_REFINE_TOLERANCE
    from .overlay import load_overlay
    from .video import FaceTracker, process_video
    from .blink import BlinkCounter

    try:
        refuse_input_as_output(args.output, [args.video, args.overlay, args.model])
        # every face read again, whatever --speed says: a face read once in some frames and twice in others jumps
        predictor = load_model(args.model, args.flip, args.speed, refine_tolerance=VIDEO_REFINE_TOLERANCE)
        overlay = load_overlay(args.overlay) if args.overlay else None
        tracker = FaceTracker(min_cutoff=args.min_cutoff, beta=args.beta, smooth=not args.no_smooth)
        with engine_flags(choose_engine(args.engine, None)):
            report = process_video(
                args.video, args.output, predictor,
                sunglasses=args.sunglasses or overlay is not None, overlay=overlay, points=args.points,
                detector=args.detector, tracker=tracker, progress=not args.no_progress, max_frames=args.max_frames,
                max_pixels=args.max_pixels, blink=BlinkCounter(args.blink_threshold, args.blink_frames),
            )
    except (FileNotFoundError, ValueError, OSError) as exc:
        _error(str(exc), args)
        return 2
    blinks = ("no blinks counted (the model has no 68-point eyes)" if report.blinks is None
              else f"{report.blinks} blink{'s' if report.blinks != 1 else ''}")
    print(
        f"{report.frames} frames ({report.size[0]}x{report.size[1]} at {report.fps:g} fps), {report.faces} face"
        f" detections, {blinks},"
        f" processed at {report.processed_fps:.1f} frames/s -> {report.output}"
    )
    return 0


def show_filters_command(args: argparse.Namespace) -> int:
    from ..visualize import show_filters

    try:
        refuse_input_as_output(args.output, [args.model])
        kernels = show_filters(load_model(args.model), args.output)
    except (FileNotFoundError, ValueError, OSError) as exc:
        _error(str(exc), args)
        return 2
    print(f"{len(kernels)} kernels {kernels.shape[1]}x{kernels.shape[2]} -> {args.output}")
    return 0


def show_maps_command(args: argparse.Namespace) -> int:
    from ..visualize import show_maps

    try:
        refuse_input_as_output(args.output, [args.image, args.model])
        with engine_flags(choose_engine(args.engine, 1)):
            maps = show_maps(load_model(args.model), args.image, args.layer, args.output, max_maps=args.max_maps,
                             max_pixels=args.max_pixels)
    except (FileNotFoundError, ValueError, TypeError, OSError) as exc:
        _error(str(exc), args)
        return 2
    print(f"{maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]} of layer {args.layer} -> {args.output}")
    return 0


# ----------------------------------------------------------------------------------------------------
# Parsers
# ----------------------------------------------------------------------------------------------------


def add_commands(subparsers) -> None:
    """Register ``predict``, ``filter``, ``video``, ``show-filters``, ``show-maps`` and ``align`` on ``subparsers``
    (what ``ArgumentParser.add_subparsers()`` returns); each sets ``func``."""
    p = subparsers.add_parser("predict", help="68 keypoints for every face in photos",
                              description="Detect faces in photos, predict 68 keypoints per face, draw them.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files and/or folders of images")
    add_common_options(p)
    p.add_argument("-o", "--output", metavar="OUT", help="picture with the keypoints (a folder when several inputs)")
    from .commands import add_align_command, add_batch_options, add_blink_options, add_predict_outputs

    add_predict_outputs(p)
    add_batch_options(p)
    p.add_argument("--indices", action="store_true", help="number the points on the picture")
    p.add_argument("--no-boxes", action="store_true", help="do not draw the detector's boxes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per image (and the engine chosen)")
    add_engine_option(p, f"numpy for up to {AUTO_NUMPY_MAX_PHOTOS} photos, numba for more")
    p.set_defaults(func=predict_command)

    p = subparsers.add_parser("filter", help="sunglasses on every face of a photo")
    p.add_argument("photo", metavar="PHOTO")
    add_common_options(p)
    p.add_argument("--sunglasses", action="store_true", help="the sunglasses filter")
    p.add_argument("--overlay", metavar="FILE.png",
                   help="your own glasses picture (alpha used; without alpha, white is transparent)")
    p.add_argument("--width-scale", type=float, default=1.0,
                   help="glasses width relative to the temples' distance (default %(default)s)")
    p.add_argument("--points", action="store_true", help="draw the keypoints too")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    add_engine_option(p, "numpy (one photo)")
    p.set_defaults(func=filter_command)

    p = subparsers.add_parser("video", help="keypoints or sunglasses on every frame of a video")
    p.add_argument("video", metavar="IN.mp4")
    add_common_options(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="written with the mp4v codec")
    p.add_argument("--sunglasses", action="store_true")
    p.add_argument("--overlay", metavar="FILE.png", help="your own glasses picture (implies --sunglasses)")
    p.add_argument("--points", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the keypoints (default: yes, unless --sunglasses)")
    p.add_argument("--no-smooth", action="store_true", help="no One Euro smoothing over time")
    p.add_argument("--min-cutoff", type=float, default=1.0,
                   help="One Euro: cutoff (Hz) of a still face (default %(default)s)")
    p.add_argument("--beta", type=float, default=5.0,
                   help="One Euro: cutoff increase per face width per second (default %(default)s)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    add_blink_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_option(p, "numba (every frame is read)")
    p.set_defaults(func=video_command)

    p = subparsers.add_parser("show-filters", help="plot the first conv layer's kernels")
    add_common_options(p, detector=False, photo=False)  # reads the model only
    p.add_argument("-o", "--output", required=True, metavar="filters.png")
    p.set_defaults(func=show_filters_command)

    p = subparsers.add_parser("show-maps", help="plot one layer's feature maps for a face")
    add_common_options(p, detector=False)
    p.add_argument("--image", required=True, metavar="FACE", help="a face crop (e.g. a training image)")
    p.add_argument("--layer", required=True, metavar="L", help="index or name in model.features, e.g. 2 or features.2")
    p.add_argument("--max-maps", type=int, default=64, help="plot at most this many channels (default %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="maps.png")
    add_engine_option(p, "numpy (one image)")
    p.set_defaults(func=show_maps_command)

    add_align_command(subparsers, add_common_options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keypoints.wild.cli", description="Facial keypoints in the wild.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resolve_speed(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
