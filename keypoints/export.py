"""``python -m keypoints export model.onnx [--model CKPT]``: a checkpoint's network as an ONNX file.

The graph is the network alone (``tinynet.onnx.to_onnx``: input ``(N, 1, S, S)`` gray crops in [0, 1], output
``(N, 2K)`` for K points, 136 for the shipped model), built from the checkpoint's weights with the ``onnx`` package. Everything else a user needs to
run it as ``keypoints predict`` does (how a face is framed and cropped, how the outputs map to pixels, the
refinement passes, flip averaging and test frames the checkpoint asks for) travels with it as the model's
``metadata_props``: :data:`METADATA_FIELDS` lists the keys; every value is JSON. A checkpoint with close-up
stages (``keypoints.closeup``) also gives one file per region beside the first, ``NAME.eyes.onnx`` and
``NAME.mouth.onnx`` (each a ``CloseupNet``: input ``(N, 1, s, s)`` crops, output ``(N, 2P)``), named in the
metadata's ``closeup``. ``examples/onnx_opencv.py`` reads them and runs the whole pipeline with OpenCV and
NumPy alone.
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
from .models import CloseupNet, NaimishNet
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
    "flip_test": "average each read with the mirrored face's, its points mirrored back the same way and reordered"
                 " by flip_permutation (the first read: the crop flipped, x -> S - 1 - x; a refinement read:"
                 " mirrored about the canonical centroid, x -> 2 c S - x with c = point_framing.centroid[0])",
    "flip_permutation": "point i of a mirrored face is point flip_permutation[i] of the face (the iBUG one for 68"
                        " points); null for a model whose points have no mirror (then flip_test is false)",
    "checkpoint": "the checkpoint file the network came from",
    "closeup": "{} or {region: {file, size, side, width, passes, crops}}, regions in the order they are read: after the"
                " face's reads, each region is read passes times by the ONNX file beside this one (input (N, 1, size,"
                " size) gray crops, output (N, 2P): P points as x0, y0, ... in units of size / 2 about the crop centre"
                " (size - 1) / 2). crops lists one face's crops as [point indices in output order, mirrored]: each"
                " centred on the mean of its points, side eye distances wide (the distance between the centres of"
                " points 36-41 and 42-47), turned so the eyes are level, then flipped if mirrored; a point read by"
                " several crops is their mean",
}


@register_converter(NaimishNet)
@register_converter(CloseupNet)
def convert_naimishnet(graph: GraphBuilder, model: NaimishNet | CloseupNet, x: str, name: str) -> str:
    """``NaimishNet.forward`` and ``CloseupNet.forward``: ``regressor(flatten(features(x)))``, children named as in
    their state dicts."""
    for child in ("features", "flatten", "regressor"):
        x = graph.convert(getattr(model, child), x, f"{name}.{child}" if name else child)
    return x


def onnx_metadata(meta: dict, checkpoint: str | os.PathLike, closeup_files: dict[str, str] | None = None) -> dict[str, str]:
    """The ``metadata_props`` (:data:`METADATA_FIELDS`, JSON values) of a checkpoint's validated ``meta``;
    ``closeup_files``: region name -> the name of its ONNX file (the regions exported with it)."""
    from .closeup.stage import REGIONS

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
        "closeup": {
            name: dict(meta["closeup"][name], file=file,
                       crops=[[[int(i) for i in indices], mirrored] for indices, mirrored in REGIONS[name].crops])
            for name, file in (closeup_files or {}).items()
        },
    }
    return {key: json.dumps(value) for key, value in values.items()}


def closeup_path(output: str | os.PathLike, region: str) -> Path:
    """Where a close-up stage of an export to ``output`` goes: ``NAME.onnx`` -> ``NAME.eyes.onnx``, beside it."""
    output = Path(output)
    return output.with_name((output.name[:-5] if output.name.endswith(".onnx") else output.name) + f".{region}.onnx")


def checkpoint_to_onnx(checkpoint: str | os.PathLike, output: str | os.PathLike = "model.onnx"):
    """``(face, closeup)``: the ``onnx.ModelProto`` of the network in ``checkpoint`` with :func:`onnx_metadata`,
    and ``{region: ModelProto}`` of its close-up stages, their files named after ``output``
    (:func:`closeup_path`). A missing or bad checkpoint raises what :func:`keypoints.checkpoint.read_checkpoint`
    raises (as for every command); a missing ``onnx`` package an ``ImportError`` saying how to install it."""
    require_onnx()  # before reading a checkpoint that could not be exported anyway
    stored, model = read_checkpoint(checkpoint)
    meta = stored["meta"]
    size = int(meta["input_size"])
    nets = stored["closeup_models"]
    files = {name: closeup_path(output, name).name for name in nets}
    face = to_onnx(model.eval(), (1, size, size), metadata=onnx_metadata(meta, checkpoint, files),
                   graph_name=f"naimishnet{size}")
    closeup = {name: to_onnx(net.eval(), (1, net.input_size, net.input_size), graph_name=f"closeup_{name}{net.input_size}")
               for name, net in nets.items()}
    return face, closeup


def export_onnx(output: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Path:
    """Write :func:`checkpoint_to_onnx` of ``checkpoint`` (None: the shipped model) to ``output``, and its close-up
    stages to their :func:`closeup_path` beside it, each through a temporary file renamed at the end (the
    close-up files first, so the file naming them never exists without them). An output that is the checkpoint
    itself is refused (:class:`keypoints.files.OutputError`). Returns ``(the checkpoint's path, the close-up
    files' paths)``."""
    from .predictor import PRETRAINED

    onnx = require_onnx()
    source = PRETRAINED if checkpoint is None else Path(checkpoint)
    from .closeup.stage import REGIONS

    for path in [output] + [closeup_path(output, name) for name in REGIONS]:
        refuse_input_as_output(path, [source], flag="output")
    face, closeup = checkpoint_to_onnx(source, output)
    written = []
    for proto, path in [(proto, closeup_path(output, name)) for name, proto in closeup.items()] + [(face, Path(output))]:
        with atomic_output(path, flag="output") as temporary:
            onnx.save(proto, str(temporary))
        written.append(path)
    return source, written[:-1]


def export_command(args) -> int:
    """``python -m keypoints export OUT.onnx [--model CKPT]`` (the main program reports ``OSError`` /
    ``ValueError`` as one ``error:`` line with exit code 2). A missing ``onnx`` package: one line, exit code 1."""
    import sys

    try:
        source, closeup = export_onnx(args.output, args.model)
    except ImportError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: the network of {source} (input 'input' (N, 1, S, S) gray crops in [0, 1],"
          " output 'output' (N, 2K) for K points); its metadata says how to frame a face and map the points back"
          " (examples/onnx_opencv.py runs it with OpenCV alone)")
    for path in closeup:
        print(f"wrote {path}: a close-up stage's network (crops of a face region in, its points out), named in"
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
