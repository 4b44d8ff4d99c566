"""68 facial keypoints on a photo with an exported model and OpenCV + NumPy alone (no keypoints, no tinynet).

    python -m keypoints export naimishnet96.onnx                  # once, where keypoints is installed
    python examples/onnx_opencv.py naimishnet96.onnx photo.jpg -o photo_keypoints.png
    python examples/onnx_opencv.py naimishnet96.onnx photo.jpg --json -        # the points as JSON

The ONNX file holds the network (``cv2.dnn.readNetFromONNX``: input ``(N, 1, S, S)`` gray crops in [0, 1],
output ``(N, 136)``) and, as metadata, the rest of the pipeline (``keypoints/export.py`` lists the keys).
This script reads that metadata straight from the file (:func:`read_metadata`, a few lines of protobuf
parsing, so not even the onnx package is needed) and does what ``python -m keypoints predict`` does:

1. detection: OpenCV's frontal Haar cascade (scale 1.1, 5 neighbours, faces of 30 pixels and more, on the
   photo shrunk to 1024 pixels on its longer side if it is larger);
2. framing: each box grown and shifted as the training images frame a face, cut out with replicated edges;
3. the first read: the crop rescaled (shorter side ``rescale``), its centre ``S x S``, flip-averaged;
4. ``refine_passes`` more reads, each framing the face from the previous points (its mirror image framed as
   training frames a mirrored face); the last one in every test frame, averaged;
5. the points mapped back to the photo's pixels;
6. if the model has close-up stages (``closeup`` in the metadata; their networks are the files
   ``NAME.eyes.onnx`` and ``NAME.mouth.onnx`` beside the model), the eyes and the mouth read up close
   ``passes`` times each, their points replaced.

What it leaves out of ``keypoints predict``: the profile cascade that keypoints tries when the frontal one
finds no face (``--detector haar+profile``, its default; ``--detector haar`` matches this script), the
reduced decoding of JPEGs over 50 megapixels, and the confidence, head pose and eye measures. On a photo
where the frontal cascade finds the faces, the points are keypoints' within a few hundredths of a pixel
(0.015 on matplotlib's portrait of Grace Hopper: ``cv2.warpAffine`` samples the refinement frames on a
1/32-pixel grid, so OpenCV's network outputs, 1e-6 from tinynet's, can move a sample by a grid step) and
within 0.001 pixel for a single read (``--refine-passes 0 --no-flip``); ``tests/test_onnx_export.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np


# ---------------------------------------------------------------------------------------------- the file
def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A protobuf base-128 integer at ``data[at:]``: ``(value, position after it)``."""
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes):
    """``(field number, wire type, value)`` of each field of one protobuf message (bytes for a length-delimited
    field, an int otherwise)."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        elif wire in (1, 5):  # fixed 64 / 32 bits
            size = 8 if wire == 1 else 4
            value, at = int.from_bytes(data[at : at + size], "little"), at + size
        else:
            raise ValueError(f"not an ONNX file (protobuf wire type {wire})")
        yield number, wire, value


def read_metadata(path: str) -> dict:
    """The ``metadata_props`` of an ONNX model (field 14 of ``ModelProto``: key 1, value 2), JSON-decoded."""
    with open(path, "rb") as file:
        data = file.read()
    metadata = {}
    for number, wire, value in _fields(data):
        if number == 14 and wire == 2:
            entry = {n: v.decode("utf-8") for n, w, v in _fields(value) if w == 2}
            metadata[entry.get(1, "")] = json.loads(entry.get(2, "null"))
    if metadata.get("format", {}).get("name") != "keypoints-onnx":
        raise ValueError(f"{path}: not a model written by 'python -m keypoints export' (no keypoints metadata)")
    return metadata


# ---------------------------------------------------------------------------------------------- geometry
def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def rotation_scale(degrees: float, scale: float) -> np.ndarray:
    """Rotation (counter-clockwise as displayed) and zoom about the origin, as ``cv2.getRotationMatrix2D``."""
    a, b = scale * np.cos(np.deg2rad(degrees)), scale * np.sin(np.deg2rad(degrees))
    return np.array([[a, b, 0.0], [-b, a, 0.0], [0.0, 0.0, 1.0]])


def apply(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(..., K, 2)`` points through ``(..., 3, 3)`` matrices."""
    return points @ np.swapaxes(matrix[..., :2, :2], -1, -2) + matrix[..., None, :2, 2]


def detect(gray: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """Frontal Haar faces ``(F, 4)`` ``(x, y, w, h)`` in the photo's pixels, left to right."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    height, width = gray.shape
    fx = fy = 1.0
    if max(height, width) > max_side:  # the cascade's time grows with the pixels; faces stay large enough
        factor = max_side / max(height, width)
        small = (max(1, round(width * factor)), max(1, round(height * factor)))
        gray = cv2.resize(gray, small, interpolation=cv2.INTER_AREA)
        fx, fy = small[0] / width, small[1] / height
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(1, int(30 * min(fx, fy))),) * 2)
    boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    left, top = boxes[:, 0] / fx, boxes[:, 1] / fy  # box edges scale back exactly
    boxes = np.rint(np.stack([left, top, (boxes[:, 0] + boxes[:, 2]) / fx - left,
                              (boxes[:, 1] + boxes[:, 3]) / fy - top], axis=1)).astype(np.int64)
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


def frame_box(box: np.ndarray, meta: dict) -> tuple[int, int, int]:
    """A detector box -> the square ``(left, top, side)`` the training images would have framed the face in."""
    x, y, w, h = (float(v) for v in box)
    size = max(w, h)
    side = max(1, int(round(meta["face_box_scale"] * size)))
    cx = x + w / 2.0 + meta["face_box_offset"][0] * size
    cy = y + h / 2.0 + meta["face_box_offset"][1] * size
    return int(np.floor(cx - side / 2.0 + 0.5)), int(np.floor(cy - side / 2.0 + 0.5)), side


def cut(gray: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """The square at ``(left, top)``, edges replicated where it leaves the photo."""
    height, width = gray.shape
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    pads = (y0 - top, top + side - y1, x0 - left, left + side - x1)
    return cv2.copyMakeBorder(np.ascontiguousarray(gray[y0:y1, x0:x1]), *pads, cv2.BORDER_REPLICATE)


def point_frame(points: np.ndarray, meta: dict) -> np.ndarray:
    """Points ``(K, 2)`` -> the matrix framing them: their centroid and RMS spread put where training put them."""
    size, framing = meta["input_size"], meta["point_framing"]
    centre = points.mean(axis=0)
    spread = np.sqrt(((points - centre) ** 2).sum(axis=1).mean())
    degrees = 0.0
    if framing["upright"]:  # level the line from the right eye's centre to the left eye's
        dx, dy = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
        degrees = -np.degrees(np.arctan2(-dy, dx))
    target = np.asarray(framing["centroid"]) * size
    return translation(*target) @ rotation_scale(degrees, framing["spread"] * size / spread) @ translation(*-centre)


def closeup_frames(points: np.ndarray, stage: dict) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(F, 68, 2)`` -> ``(frames (F, C, 3, 3), usable (F,) bool)`` for the ``C`` crops of a close-up stage:
    each centred on the mean of its points, ``side`` eye distances wide in ``size`` pixels, the eyes level, then
    flipped if mirrored. Faces whose eyes are less than a pixel apart are not usable (they keep their points)."""
    size, middle = stage["size"], (stage["size"] - 1) / 2.0
    dx, dy = (points[:, 42:48].mean(axis=1) - points[:, 36:42].mean(axis=1)).T
    distance = np.hypot(dx, dy)
    usable = distance >= 1.0
    mirror = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    frames = np.tile(np.eye(3), (len(points), len(stage["crops"]), 1, 1))
    for i in np.flatnonzero(usable):
        turn = rotation_scale(-np.degrees(np.arctan2(-dy[i], dx[i])), size / (stage["side"] * distance[i]))
        for c, (indices, mirrored) in enumerate(stage["crops"]):
            frame = translation(middle, middle) @ turn @ translation(*-points[i, indices].mean(axis=0))
            frames[i, c] = mirror @ frame if mirrored else frame
    return frames, usable


def frame_jitter(frame: list, meta: dict) -> np.ndarray:
    """A test frame ``[shift_x, shift_y, zoom, degrees]``: canonical crop pixels -> that frame's crop pixels."""
    size = meta["input_size"]
    target = np.asarray(meta["point_framing"]["centroid"]) * size
    moved = target + np.asarray(frame[:2]) * size
    return translation(*moved) @ rotation_scale(frame[3], frame[2]) @ translation(*-target)


# ---------------------------------------------------------------------------------------------- the network
def read(net, crops: np.ndarray, meta: dict, flip: bool, mirrored: np.ndarray | None = None,
         axis: float | None = None) -> np.ndarray:
    """Crops ``(F, S, S)`` -> points ``(F, K, 2)`` in crop pixels, averaged with the mirrored faces' if ``flip``.
    ``mirrored``: the faces' mirror images, ``x' = axis - x`` from the crops' pixels (None: the crops flipped,
    ``axis = S - 1``)."""
    size = meta["input_size"]

    def network(batch: np.ndarray) -> np.ndarray:
        net.setInput(np.ascontiguousarray(batch[:, None], dtype=np.float32))
        out = net.forward().reshape(len(batch), meta["num_points"], 2).astype(np.float64)
        return out * meta["output_scale"] + meta["output_offset"]

    points = network(crops)
    if flip:
        if mirrored is None:
            mirrored, axis = crops[:, :, ::-1], size - 1.0
        back = network(mirrored)[:, meta["flip_permutation"]]  # the mirrored face's points, ...
        back[..., 0] = axis - back[..., 0]  # ... mirrored back onto the face
        points = 0.5 * (points + back)
    return points


def face_points(net, gray: np.ndarray, boxes: np.ndarray, meta: dict, refine_passes: int, flip: bool,
                test_frames: list) -> np.ndarray:
    """The K points ``(F, K, 2)`` of each detected face, in the photo's pixels (68 for the shipped model)."""
    size, rescale = meta["input_size"], meta["rescale"]
    squares = [frame_box(box, meta) for box in boxes]
    rescaled, to_rescaled = [], []
    for left, top, side in squares:
        face = cut(gray, left, top, side)
        shrinking = rescale <= side  # area averaging when shrinking, bilinear when enlarging
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        rescaled.append(cv2.resize(face, (rescale, rescale), interpolation=interpolation))
        s = rescale / side  # pixel centres: x' = (x + 0.5) s - 0.5, once the square's corner is at 0
        resize = np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])
        to_rescaled.append(resize @ translation(-left, -top))  # photo -> rescaled pixels
    offset = int(round((rescale - size) / 2.0))  # the centre crop (Python rounds halves to even, as keypoints)
    frames = np.stack([translation(-offset, -offset)] * len(boxes))  # rescaled -> crop pixels
    crops = np.stack([image[offset : offset + size, offset : offset + size] for image in rescaled])
    points = read(net, crops, meta, flip)  # (F, K, 2) in crop pixels
    # a mirrored face is framed as training frames it: mirrored about the line through the canonical centroid
    # (x' = 2 c S - x), where a framed face's points are centred, not about the crop's middle
    axis = 2.0 * meta["point_framing"]["centroid"][0] * size
    mirror = np.array([[-1.0, 0.0, axis], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for index in range(refine_passes):
        frames = np.stack([point_frame(p, meta) for p in apply(points, np.linalg.inv(frames))])
        last = index == refine_passes - 1
        jitters = [frame_jitter(f, meta) for f in test_frames] if last and test_frames else [np.eye(3)]
        total = 0.0
        for jitter in jitters:
            def framed(view: np.ndarray) -> np.ndarray:  # every face's crop in the frame `view @ jitter @ frame`
                return np.stack([cv2.warpAffine(image, (view @ jitter @ frame)[:2], (size, size), flags=cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REPLICATE) for image, frame in zip(rescaled, frames)])

            found = read(net, framed(np.eye(3)), meta, flip, framed(mirror) if flip else None, axis)
            total = total + apply(found, np.linalg.inv(jitter))  # into the canonical crop
        points = total / len(jitters)
    return apply(points, np.linalg.inv(frames @ np.stack(to_rescaled)))


def read_closeup(net, gray: np.ndarray, points: np.ndarray, stage: dict, passes: int) -> np.ndarray:
    """Points ``(F, 68, 2)`` in the photo's pixels with a close-up stage's region read again, ``passes`` times."""
    points, size = points.copy(), stage["size"]
    region = sorted({i for indices, _ in stage["crops"] for i in indices})
    for _ in range(passes):
        frames, usable = closeup_frames(points, stage)
        if not usable.any():
            break
        crops = np.stack([cv2.warpAffine(gray, frame[:2], (size, size), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE) for row in frames[usable] for frame in row])
        net.setInput(np.ascontiguousarray(crops[:, None], dtype=np.float32))
        reads = net.forward().reshape(usable.sum(), len(stage["crops"]), -1, 2).astype(np.float64)
        reads = reads * (size / 2.0) + (size - 1) / 2.0
        back = np.linalg.inv(frames[usable])  # crop -> photo pixels
        total, count = np.zeros((int(usable.sum()), 68, 2)), np.zeros(68)
        for c, (indices, _) in enumerate(stage["crops"]):
            total[:, indices] += apply(reads[:, c], back[:, c])
            count[indices] += 1
        points[np.ix_(np.flatnonzero(usable), region)] = total[:, region] / count[region, None]
    return points


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, then rename it: never half a file."""
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="exit codes: 0 done; 1 no face found; 2 an unreadable model or photo")
    parser.add_argument("model", help="an ONNX file written by 'python -m keypoints export'")
    parser.add_argument("photo")
    parser.add_argument("-o", "--output", help="the photo with the points drawn (e.g. out.png)")
    parser.add_argument("--json", help="write the boxes and points as JSON to this file ('-': standard output)")
    parser.add_argument("--refine-passes", type=int, choices=range(5), help="default: the model's (metadata)")
    parser.add_argument("--no-flip", action="store_true", help="do not average with the mirrored face")
    parser.add_argument("--no-test-frames", action="store_true", help="the last pass reads the canonical frame only")
    parser.add_argument("--closeup-passes", type=int, choices=range(5),
                        help="reads of each close-up stage (eyes, mouth); default: the model's (metadata)")
    args = parser.parse_args(argv)
    for flag, output in (("-o", args.output), ("--json", args.json)):
        if output and output != "-" and os.path.realpath(output) in map(os.path.realpath, (args.model, args.photo)):
            print(f"error: {flag} {output}: this is an input; writing there would destroy it", file=sys.stderr)
            return 2
    try:
        meta = read_metadata(args.model)
        net = cv2.dnn.readNetFromONNX(args.model)
        closeup = meta.get("closeup") or {}
        if args.closeup_passes and not closeup:
            raise ValueError("--closeup-passes: this model has no close-up stages")
        folder = os.path.dirname(os.path.abspath(args.model))
        closeup_nets = {name: cv2.dnn.readNetFromONNX(os.path.join(folder, stage["file"])) for name, stage in closeup.items()}
    except (OSError, ValueError, cv2.error) as exc:
        print(f"error: {args.model}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    try:
        data = np.fromfile(args.photo, dtype=np.uint8)
    except OSError as exc:
        print(f"error: {args.photo}: cannot read it ({exc.strerror or exc})", file=sys.stderr)
        return 2
    photo = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # as keypoints: EXIF orientation applied
    if photo is None:
        print(f"error: {args.photo}: not an image OpenCV can read", file=sys.stderr)
        return 2
    boxes = detect(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    if len(boxes) == 0:
        print(f"error: {args.photo}: no face found", file=sys.stderr)
        return 1
    gray = cv2.cvtColor(photo.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_BGR2GRAY)  # as keypoints reads
    passes = meta["refine_passes"] if args.refine_passes is None else args.refine_passes
    test_frames = [] if args.no_test_frames else meta["test_frames"]
    points = face_points(net, gray, boxes, meta, passes, meta["flip_test"] and not args.no_flip, test_frames)
    for name, stage in closeup.items():  # in the metadata's order: the eyes, then the mouth
        passes = stage["passes"] if args.closeup_passes is None else args.closeup_passes
        points = read_closeup(closeup_nets[name], gray, points, stage, passes)
    faces = [{"box": box.tolist(), "points": np.round(p, 4).tolist()} for box, p in zip(boxes, points)]
    if args.json:
        text = json.dumps({"photo": args.photo, "faces": faces}) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            write_file(args.json, text.encode("utf-8"))
    if args.output:
        for (x, y, w, h), face in zip(boxes, points):
            cv2.rectangle(photo, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), (255, 128, 0), 2)
            for px, py in face:
                cv2.circle(photo, (int(round(px)), int(round(py))), 2, (0, 255, 0), -1, cv2.LINE_AA)
        try:
            encoded, picture = cv2.imencode(os.path.splitext(args.output)[1] or ".png", photo)
        except cv2.error:
            encoded = False
        if not encoded:
            print(f"error: -o {args.output}: OpenCV cannot write this kind of file (use .png or .jpg)", file=sys.stderr)
            return 2
        write_file(args.output, picture.tobytes())
    if not args.json or args.json != "-":
        print(f"{args.photo}: {len(faces)} face{'s' if len(faces) != 1 else ''}"
              + (f" -> {args.output}" if args.output else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
