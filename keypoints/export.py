"""``python -m keypoints export model.onnx [--model CKPT]``: a checkpoint's network as an ONNX file.

The graph is the network alone (``tinynet.onnx.to_onnx``: input ``(N, 1, S, S)`` gray crops in [0, 1], output
``(N, 2K)`` for K points, 136 for the shipped model), built from the checkpoint's weights with the ``onnx`` package. Everything else a user needs to
run it as ``keypoints predict`` does (how a face is framed and cropped, how the outputs map to pixels, the
refinement passes, flip averaging and test frames the checkpoint asks for) travels with it as the model's
``metadata_props``: :data:`METADATA_FIELDS` lists the keys; every value is JSON. A checkpoint with an eye stage
(``keypoints.eyes``) also gives a second file beside the first, ``NAME.eyes.onnx`` (its ``EyeNet``: input
``(N, 1, s, s)`` eye crops, output ``(N, 12)``), named in the metadata's ``eye_stage``. ``examples/onnx_opencv.py``
reads them and runs the whole pipeline with OpenCV and NumPy alone.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tinynet.onnx import GraphBuilder, register_converter, require_onnx, to_onnx

from .checkpoint import flip_permutation_of, read_checkpoint
from .files import atomic_output, refuse_input_as_output
from .geometry import denormalize_keypoints
from .models import EyeNet, NaimishNet
from .wild.face_crop import FRAME_OFFSET, FRAME_SCALE

FORMAT = "keypoints-onnx"
VERSION = 1

#: the ``metadata_props`` keys of an exported model and what their (JSON) values mean
METADATA_FIELDS = {
    "format": f'{{"name": "{FORMAT}", "version": {VERSION}}}: this layout of the fields',
    "input": "what the input tensor holds: (N, 1, S, S) float32 gray crops, values in [0, 1]",
    "output": "what the output tensor holds: (N, 2K), K points as x0, y0, x1, y1, ... in normalised crop units",
    "num_points": "K, the number of points (68: the iBUG layout)",
    "input_size": "S, the side of the square crop the network reads",
    "output_scale": "crop pixels = output * output_scale + output_offset (50 S / 224)",
    "output_offset": "(100 S / 224); pixel centres sit at integer coordinates",
    "gray": "how a BGR photo becomes the gray input: divide by 255, then cv2.COLOR_BGR2GRAY",
    "rescale": "the face image's shorter side is resized to this (cv2.INTER_AREA shrinking, INTER_LINEAR"
               " enlarging), then its centre S x S is the first pass's crop",
    "face_box_scale": "a detector box (x, y, w, h) is framed as a square of side round(scale * max(w, h)) ...",
    "face_box_offset": "... centred on the box centre moved by offset * max(w, h) (x, y), edges replicated",
    "refine_passes": "how many times the face is framed again from its own points and read again",
    "point_framing": "where a refinement frame puts the points: centroid (x, y) and RMS spread as fractions of S;"
                     " upright: also level the eyes (points 36-41, 42-47)",
    "test_frames": "frames [shift_x, shift_y, zoom, degrees] around the canonical one that the last refinement"
                   " pass reads and averages ([]: the canonical frame only)",
    "flip_test": "average each read with the mirrored crop's (its points mirrored back: x -> S - 1 - x, then"
                 " reordered by flip_permutation)",
    "flip_permutation": "point i of a mirrored face is point flip_permutation[i] of the face (the iBUG one for 68"
                        " points); null for a model whose points have no mirror (then flip_test is false)",
    "checkpoint": "the checkpoint file the network came from",
    "eye_stage": "null, or {file, size, side, passes}: after the face's reads, each eye is read passes times by the"
                 " ONNX file beside this one (input (N, 1, size, size) gray eye crops, output (N, 12): points 36-41"
                 " as x0, y0, ... in units of size / 2 about the crop centre (size - 1) / 2); the crop is centred on"
                 " the eye's six points, side eye distances wide, turned so the eyes are level, the left eye"
                 " mirrored (its points come back as 45, 44, 43, 42, 47, 46)",
}


@register_converter(NaimishNet)
@register_converter(EyeNet)
def convert_naimishnet(graph: GraphBuilder, model: NaimishNet | EyeNet, x: str, name: str) -> str:
    """``NaimishNet.forward`` and ``EyeNet.forward``: ``regressor(flatten(features(x)))``, children named as in
    their state dicts."""
    for child in ("features", "flatten", "regressor"):
        x = graph.convert(getattr(model, child), x, f"{name}.{child}" if name else child)
    return x


def onnx_metadata(meta: dict, checkpoint: str | os.PathLike, eyes_file: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` (:data:`METADATA_FIELDS`, JSON values) of a checkpoint's validated ``meta``;
    ``eyes_file``: the name of the eye stage's ONNX file (for a checkpoint with an eye stage)."""
    from .framing import DATASET_FRAMING, PointFraming

    size, num_points, permutation = int(meta["input_size"]), int(meta["num_points"]), flip_permutation_of(meta)
    framing = DATASET_FRAMING if meta.get("framing") is None else PointFraming.from_dict(meta["framing"])
    # the network's output q is crop pixels q * scale + offset (keypoints.geometry, the one home of the normalisation)
    offset = float(denormalize_keypoints(np.zeros(2), size)[0])
    scale = float(denormalize_keypoints(np.ones(2), size)[0]) - offset
    values = {
        "format": {"name": FORMAT, "version": VERSION},
        "input": f"(N, 1, {size}, {size}) float32 gray crops, values in [0, 1]",
        "output": f"(N, {2 * num_points}): {num_points} points x0, y0, x1, y1, ... in normalised crop units",
        "num_points": num_points,
        "input_size": size,
        "output_scale": scale,
        "output_offset": offset,
        "gray": "BGR / 255, then cv2.COLOR_BGR2GRAY",
        "rescale": int(meta["rescale"]),
        "face_box_scale": FRAME_SCALE,
        "face_box_offset": list(FRAME_OFFSET),
        "refine_passes": int(meta["refine_passes"]),
        "point_framing": framing.to_dict(),
        "test_frames": [list(frame) for frame in meta.get("test_frames") or []],
        "flip_test": bool(meta["flip_test"]),
        "flip_permutation": None if permutation is None else [int(i) for i in permutation],
        "checkpoint": Path(checkpoint).name,
        "eye_stage": None,
    }
    if meta.get("eye_stage") is not None and eyes_file is not None:
        stage = meta["eye_stage"]
        values["eye_stage"] = {"file": eyes_file, "size": stage["size"], "side": stage["side"], "passes": stage["passes"]}
    return {key: json.dumps(value) for key, value in values.items()}


def eyes_path(output: str | os.PathLike) -> Path:
    """Where the eye stage of an export to ``output`` goes: ``NAME.onnx`` -> ``NAME.eyes.onnx``, beside it."""
    output = Path(output)
    return output.with_name((output.name[:-5] if output.name.endswith(".onnx") else output.name) + ".eyes.onnx")


def checkpoint_to_onnx(checkpoint: str | os.PathLike, eyes_file: str | None = None):
    """``(face, eyes)``: the ``onnx.ModelProto`` of the network in ``checkpoint`` with :func:`onnx_metadata`
    (naming ``eyes_file``), and that of its eye stage (None without one). A missing or bad checkpoint raises
    what :func:`keypoints.checkpoint.read_checkpoint` raises (as for every command); a missing ``onnx`` package
    an ``ImportError`` saying how to install it."""
    require_onnx()  # before reading a checkpoint that could not be exported anyway
    stored, model = read_checkpoint(checkpoint)
    meta = stored["meta"]
    size = int(meta["input_size"])
    eye_model = stored.get("eye_model")
    face = to_onnx(model.eval(), (1, size, size), metadata=onnx_metadata(meta, checkpoint, eyes_file if eye_model else None),
                   graph_name=f"naimishnet{size}")
    if eye_model is None:
        return face, None
    eye_size = eye_model.input_size
    return face, to_onnx(eye_model.eval(), (1, eye_size, eye_size), graph_name=f"eyenet{eye_size}")


def export_onnx(output: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Path:
    """Write :func:`checkpoint_to_onnx` of ``checkpoint`` (None: the shipped model) to ``output``, and its eye
    stage, if it has one, to :func:`eyes_path` of ``output``, each through a temporary file renamed at the end
    (the eye file first, so the file naming it never exists without it). An output that is the checkpoint
    itself is refused (:class:`keypoints.files.OutputError`). Returns ``(the checkpoint's path, the eye
    file's path or None)``."""
    from .predictor import PRETRAINED

    onnx = require_onnx()
    source = PRETRAINED if checkpoint is None else Path(checkpoint)
    for path in (output, eyes_path(output)):
        refuse_input_as_output(path, [source], flag="output")
    face, eyes = checkpoint_to_onnx(source, eyes_path(output).name)
    for proto, path in ((eyes, eyes_path(output)), (face, output)):
        if proto is not None:
            with atomic_output(path, flag="output") as temporary:
                onnx.save(proto, str(temporary))
    return source, None if eyes is None else eyes_path(output)


def export_command(args) -> int:
    """``python -m keypoints export OUT.onnx [--model CKPT]`` (the main program reports ``OSError`` /
    ``ValueError`` as one ``error:`` line with exit code 2). A missing ``onnx`` package: one line, exit code 1."""
    import sys

    try:
        source, eyes = export_onnx(args.output, args.model)
    except ImportError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: the network of {source} (input 'input' (N, 1, S, S) gray crops in [0, 1],"
          " output 'output' (N, 2K) for K points); its metadata says how to frame a face and map the points back"
          " (examples/onnx_opencv.py runs it with OpenCV alone)")
    if eyes is not None:
        print(f"wrote {eyes}: the eye stage's network (eye crops in, six points of an eye out), named in"
              f" {Path(args.output).name}'s metadata")
    return 0


def add_export_command(commands) -> None:
    """Register ``export`` on the ``python -m keypoints`` sub-parsers."""
    import argparse

    parser = commands.add_parser(
        "export", help="write the network of a checkpoint as an ONNX file (OpenCV's DNN module and onnxruntime read it)",
        description="Write the network of a checkpoint as an ONNX graph (opset 13, batch size free), with the"
                    " preprocessing and the output mapping as metadata; needs the onnx package"
                    ' (pip install -e ".[onnx]"). Run it with OpenCV alone: examples/onnx_opencv.py.',
        epilog="exit codes: 0 done; 1 the onnx package is missing; 2 a bad model file or output path",
    )
    parser.add_argument("output", metavar="OUT.onnx")
    parser.add_argument("--model", metavar="CKPT", help="checkpoint to export (default: the shipped model)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    parser.set_defaults(func=export_command)
