"""What ``predict`` writes: a record per photo, in JSON, JSON Lines, CSV or iBUG ``.pts`` files.

A photo's record (the ``images`` entries of the JSON document, one line of JSON Lines)::

    {"path": ..., "height": H, "width": W, "error": null or why the photo gave nothing,
     "below_min_confidence": faces dropped by --min-confidence,
     "faces": [{"box": [x, y, w, h], "crop": [x, y, side, side], "confidence": c or null,
                "pose": {"yaw": ..., "pitch": ..., "roll": ..., "reprojection_error": ...} or null,
                "pose_error": null or why there is no pose,
                "eyes": {"right_ear": ..., "left_ear": ..., "right_open": ..., "left_open": ...} or null
                        (a model of another point layout than the 68 iBUG points: no pose, no eyes),
                "points": [[x0, y0], ..., [x67, y67]]}, ...]}

- ``json``: one document ``{"model", "detector", "images": [records], "summary"}``;
- ``jsonl``: one record per line, appended as photos finish (:class:`JsonlStream`: a re-run resumes the
  file, skipping the photos it already records);
- ``csv``: one face per row, ``file, face, box_x, box_y, box_w, box_h, confidence, yaw, pitch, roll,
  error, pose_error, x0, y0, ..., x67, y67`` (``x{K-1}, y{K-1}`` for a K-point model); a photo without
  faces is one row with an empty ``face`` and its ``error``;
- ``pts``: the 300-W / iBUG format other landmark tools read, one file per face. Its coordinates are
  1-based (the 300-W annotations were made in Matlab: the top-left pixel's centre is (1, 1)), so a
  point ``(x, y)`` of this package is written as ``(x + 1, y + 1)`` and ``read_pts`` subtracts 1
  (:mod:`keypoints.data.pts`, the one home of the format).

Every other file is written to a temporary file beside its target and renamed over it (:func:`keypoints.files.write_text`):
a reader never sees half a file, and an interrupted run leaves the old file intact.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..data.pts import read_pts, to_pts  # noqa: F401 (the one home of the .pts format; re-exported)
from ..files import write_text

FORMATS = ("json", "jsonl", "csv", "pts")
CSV_FIELDS = ["file", "face", "box_x", "box_y", "box_w", "box_h", "confidence", "yaw", "pitch", "roll", "error",
              "pose_error"]


def csv_header(num_points: int = 68) -> list[str]:
    """The CSV columns: :data:`CSV_FIELDS`, then ``x0, y0, ..., x{K-1}, y{K-1}`` for a K-point model."""
    return CSV_FIELDS + [f"{axis}{i}" for i in range(num_points) for axis in "xy"]


#: the columns for the shipped (68-point) model
CSV_HEADER = csv_header(68)


def face_record(face, rect, image_shape) -> dict:
    """A face's JSON-able record: its box, crop rectangle, confidence, head pose, eyes and points.

    ``face``: a :class:`keypoints.wild.faces.FaceKeypoints`; ``rect``: the crop rectangle the network read;
    ``image_shape``: the photo's ``(H, W[, C])`` (the pose's camera). A degenerate pose fit gives
    ``"pose": null`` and the reason in ``"pose_error"``.
    """
    from .blink import eye_aspects
    from .pose import PoseError, head_pose

    points = np.asarray(face.points, dtype=np.float64)
    try:
        pose = head_pose(points, image_shape)
        pose_json, pose_error = {
            "yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2),
            "reprojection_error": round(pose.reprojection_error, 4),
        }, None
    except PoseError as exc:
        pose_json, pose_error = None, str(exc)
    eyes = eye_aspects(points) if len(points) == 68 else None  # the eyes of the iBUG layout; other models: null
    confidence = getattr(face, "confidence", None)
    return {
        "box": [int(v) for v in face.box],
        "crop": [int(v) for v in rect],
        "confidence": None if confidence is None else round(float(confidence), 4),
        "pose": pose_json,
        "pose_error": pose_error,
        "eyes": None if eyes is None else {
            "right_ear": round(eyes.right, 4), "left_ear": round(eyes.left, 4),
            "right_open": eyes.right_open, "left_open": eyes.left_open,
        },
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in points],
    }


# ----------------------------------------------------------------------------------------------------
# Text of each format
# ----------------------------------------------------------------------------------------------------


def to_json(records: list[dict], header: dict | None = None, summary: dict | None = None) -> str:
    """The JSON document: ``header`` (e.g. model and detector), ``images``, ``summary``."""
    return json.dumps({**(header or {}), "images": records, "summary": summary or {}}, indent=1) + "\n"


def to_jsonl(records: list[dict]) -> str:
    """One record per line (no summary: a line is a photo)."""
    return "".join(json.dumps(record) + "\n" for record in records)


def _cell(value) -> str:
    return "" if value is None else str(value)


def to_csv(records: list[dict]) -> str:
    """One face per row (:func:`csv_header`, with as many point columns as the faces have points: one model
    wrote them all; 68 when no photo has a face); a photo without faces is one row with its error."""
    counts = {len(face["points"]) for record in records for face in record["faces"]}
    if len(counts) > 1:
        raise ValueError(f"to_csv: every face must have the same number of points, got {sorted(counts)}")
    num_points = counts.pop() if counts else 68
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_header(num_points))
    for record in records:
        if not record["faces"]:
            writer.writerow([record["path"], ""] + [""] * 8 + [_cell(record.get("error")), ""] + [""] * (2 * num_points))
        for k, face in enumerate(record["faces"]):
            pose = face.get("pose") or {}
            writer.writerow(
                [record["path"], k, *face["box"], _cell(face.get("confidence"))]
                + [_cell(pose.get(angle)) for angle in ("yaw", "pitch", "roll")]
                + ["", _cell(face.get("pose_error"))]
                + [v for point in face["points"] for v in point]
            )
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def write_table(records: list[dict], fmt: str, target: str, header: dict | None = None, summary: dict | None = None) -> None:
    """Write the records as ``fmt`` (json, jsonl or csv) to the file ``target``, or ``"-"``: stdout."""
    if fmt not in ("json", "jsonl", "csv"):
        raise ValueError(f"write_table: format must be json, jsonl or csv, got {fmt!r}")
    text = {"json": lambda: to_json(records, header, summary), "jsonl": lambda: to_jsonl(records),
            "csv": lambda: to_csv(records)}[fmt]()
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text(target, text, flag="--json")


def pts_paths(photo: str | os.PathLike, faces: int, folder: str | os.PathLike | None = None) -> list[Path]:
    """Where a photo's ``.pts`` files go: ``<stem>.pts`` for one face, ``<stem>_<k>.pts`` (k from 0) for
    several; beside the photo, or in ``folder``."""
    photo = Path(photo)
    where = photo.parent if folder is None else Path(folder)
    if faces == 1:
        return [where / f"{photo.stem}.pts"]
    return [where / f"{photo.stem}_{k}.pts" for k in range(faces)]


def write_pts_files(record: dict, folder: str | os.PathLike | None = None, overwrite: bool = False) -> list[Path]:
    """Write a photo record's faces as ``.pts`` files (see :func:`pts_paths`); returns the paths.

    Beside the photo, an existing ``.pts`` file may be the photo's own annotation (the 300-W layout), so
    it is only replaced with ``overwrite``; raises ``FileExistsError`` naming it otherwise.
    """
    paths = pts_paths(record["path"], len(record["faces"]), folder)
    if folder is None and not overwrite:
        existing = [str(path) for path in paths if path.exists()]
        if existing:
            raise FileExistsError(
                f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} (annotations?); not"
                " replaced: write the .pts files into a folder with -o DIR, or pass --overwrite"
            )
    for path, face in zip(paths, record["faces"]):
        write_text(path, to_pts(face["points"]), flag="--format pts")
    return paths


# ----------------------------------------------------------------------------------------------------
# JSON Lines as photos finish: resumable
# ----------------------------------------------------------------------------------------------------


def settings_path(target: str | os.PathLike) -> Path:
    """The file beside a JSON Lines output that says which model and settings wrote it: ``<target>.run.json``."""
    target = Path(target)
    return target.with_name(target.name + ".run.json")


class JsonlStream:
    """Records appended to a JSON Lines file (or standard output, ``"-"``) one line at a time, as photos finish.

    Each line goes out in one ``write`` (``O_APPEND``) and is flushed, so a killed run leaves complete lines
    only, except when the kill lands inside that one write (or the power goes): a re-run drops such a last
    line and says so. A re-run on an existing file resumes it: :attr:`done` holds the paths it already
    records, which the caller skips. The file's ``settings`` (model digest, detector, ...) are kept beside
    it (:func:`settings_path`); a run with other settings is refused (``ValueError``), since its lines
    would mix two models' answers, unless ``overwrite`` starts the file afresh.

    Attributes
    ----------
    done : set of str
        ``record["path"]`` of every complete line already in the file.
    notes : list of str
        What resuming did (lines kept, a partial line dropped), for the user.
    """

    def __init__(self, target: str, settings: dict, overwrite: bool = False):
        self.target, self.done, self.notes = target, set(), []
        if target == "-":
            self._fd = None
            return
        path = Path(target)
        if path.is_dir():
            raise ValueError(f"--json {target}: is a folder; give a file name (e.g. {path / 'faces.jsonl'})")
        if overwrite or not path.exists() or path.stat().st_size == 0:
            write_text(settings_path(path), json.dumps(settings, indent=1) + "\n", flag="--json")
            write_text(path, "", flag="--json")  # an earlier file (with --overwrite) replaced in one step
        else:
            self._check_settings(path, settings)
            self._resume(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    @staticmethod
    def _check_settings(path: Path, settings: dict) -> None:
        recorded = settings_path(path)
        advice = f"choose another --json, or pass --overwrite to start {path} afresh"
        try:
            earlier = json.loads(recorded.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"--json {path}: exists, without {recorded.name} saying which model and settings wrote"
                             f" it, so it cannot be resumed: {advice}") from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"--json {path}: cannot read its settings file {recorded} ({exc}): {advice}") from None
        if not isinstance(earlier, dict):
            raise ValueError(f"--json {path}: its settings file {recorded} holds no settings: {advice}")
        differ = [f"{key} {earlier.get(key)!r}, now {value!r}" for key, value in settings.items()
                  if key != "model" and earlier.get(key) != value]
        if differ:
            raise ValueError(f"--json {path}: was written with other settings (model {earlier.get('model')!r};"
                             f" {'; '.join(differ)}): resuming would mix two runs' answers; {advice}")

    def _resume(self, path: Path) -> None:
        data = path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: after the last newline (empty if the file ends with one)
        kept_bytes = len(data) - len(tail)
        for number, line in enumerate(complete, start=1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                    raise ValueError("no photo path")
            except ValueError as exc:
                if number < len(complete):  # only the last line can be a torn write
                    raise ValueError(f"--json {path}: line {number} is not a photo record ({exc}); the file is not"
                                     " one this command wrote: choose another --json or pass --overwrite") from None
                tail = line + b"\n" + tail
                kept_bytes -= len(line) + 1
                break
            self.done.add(record["path"])
        if tail:
            os.truncate(path, kept_bytes)
            self.notes.append(f"{path}: dropped an incomplete last line ({len(tail)} bytes, from an interrupted"
                              " write); its photo is read again")
        self.notes.append(f"{path}: resuming, {len(self.done)} photo{'s' if len(self.done) != 1 else ''} already"
                          " recorded")

    def write(self, record: dict) -> None:
        """Append one record as one line, in one write, flushed."""
        line = json.dumps(record) + "\n"
        if self._fd is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        data = line.encode("utf-8")
        while data:  # os.write on a regular file writes it all at once; the loop is for a short write
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        """Flush the file to disk and close it (idempotent)."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
