"""Where outputs go: never over an input, never half-written.

Every file a command writes (pictures, videos, JSON, plots, checkpoints) goes through this module:

- :func:`refuse_input_as_output` stops a command whose output path resolves to one of its inputs
  (``video clip.mp4 -o clip.mp4`` would otherwise overwrite the video while reading it);
- :func:`atomic_output` hands out a hidden temporary path beside the destination, with the same
  extension (OpenCV and matplotlib pick the format from it), and renames it onto the destination only
  when the writer finished; an error or Ctrl-C removes the temporary and leaves the destination as it
  was. ``tinynet.save`` writes checkpoints the same way (``tinynet.serialization._atomic_write``);
- :func:`remove_stale_temporaries` deletes the temporaries a killed process left in a folder.

:class:`OutputError` (a ``ValueError``) names the path and what is wrong with it; the command lines
report it as a bad ``-o`` / ``--out`` with exit code 2.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

#: every temporary this module (and tinynet.save) creates: ".<name>.<12 hex digits>.tmp[<suffix>]"
_TEMPORARY_MARK = ".tmp"


class OutputError(ValueError):
    """An output path that cannot be used: it is an input, its folder cannot be created, or it cannot
    be written in that format. ``str`` reads ``"<flag> <path>: <reason>"``."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file: the same inode when both exist, else the same resolved path
    (so ``./x.png``, ``x.png`` and a symbolic link to it all count)."""
    a, b = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return a.samefile(b)
    return a.resolve() == b.resolve()


def refuse_input_as_output(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                           flag: str = "-o") -> None:
    """Raise :class:`OutputError` if ``output`` is the same file as one of ``inputs`` (``None`` skipped)."""
    for source in inputs:
        if source is not None and same_file(output, source):
            raise OutputError(
                f"{flag} {output}: this is the input {source}; writing there would destroy it while it is read"
                " (choose another output path)"
            )


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_TEMPORARY_MARK}{path.suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, flag: str = "-o") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the ``with`` block ends normally.

    The folder is created if needed (:class:`OutputError` if it cannot be). If the block raises (also
    ``KeyboardInterrupt``) or writes nothing, the temporary is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name (e.g. {path / 'out.png'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot create the folder {path.parent} ({exc.strerror or exc})") from exc
    temporary = _temporary(path)
    try:
        yield temporary
        if not temporary.is_file():
            raise OutputError(f"{flag} {path}: nothing was written")
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise OutputError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def check_image_output(path: str | os.PathLike, flag: str = "-o") -> Path:
    """Refuse, before any work, an image output OpenCV has no writer for (by its extension) or that is a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name (e.g. {path / 'out.png'})")
    if not cv2.haveImageWriter(str(path)):
        raise OutputError(
            f"{flag} {path}: OpenCV cannot write an image with the extension {path.suffix or '(none)'!r}"
            " (use e.g. .png or .jpg)"
        )
    return path


def write_image(path: str | os.PathLike, image: np.ndarray, flag: str = "-o") -> None:
    """``cv2.imwrite`` through :func:`atomic_output`; an extension OpenCV cannot write is an
    :class:`OutputError` (OpenCV 4.14 raises for it, older versions return False)."""
    path = Path(path)
    with atomic_output(path, flag) as temporary:
        try:
            written = cv2.imwrite(str(temporary), image)
        except cv2.error as exc:
            written = False
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        else:
            detail = ""
        if not written:
            raise OutputError(
                f"{flag} {path}: OpenCV cannot write an image with the extension {path.suffix or '(none)'!r}"
                f" (use e.g. .png or .jpg){'; ' + detail if detail else ''}"
            )


def write_text(path: str | os.PathLike, text: str, flag: str = "--json") -> None:
    """Text (UTF-8) through :func:`atomic_output`."""
    with atomic_output(path, flag) as temporary:
        temporary.write_text(text, encoding="utf-8")


def save_figure(figure, path: str | os.PathLike, flag: str = "-o", **savefig_kwargs) -> Path:
    """``figure.savefig`` through :func:`atomic_output` (the format follows ``path``'s extension)."""
    path = Path(path)
    with atomic_output(path, flag) as temporary:
        try:
            figure.savefig(temporary, format=path.suffix.lstrip(".").lower() or None, **savefig_kwargs)
        except ValueError as exc:  # matplotlib: "Format 'xyz' is not supported"
            raise OutputError(f"{flag} {path}: {exc}") from exc
    return path


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporaries of ``names`` (e.g. ``"last.npz"``) in ``folder`` that a killed run left
    behind (``.last.npz.<hex>.tmp``); returns what was removed. Call it only while no other process
    writes those files (a training run owns its ``--out``)."""
    folder = Path(folder)
    removed = []
    for name in names:
        for stale in folder.glob(f".{name}.*{_TEMPORARY_MARK}*"):
            marker = stale.name[len(name) + 2:]  # "<hex>.tmp[<suffix>]"
            if len(marker) >= 16 and marker[12:16] == _TEMPORARY_MARK and stale.is_file():
                with contextlib.suppress(OSError):
                    stale.unlink()
                    removed.append(stale)
    return removed


#: what a training run writes into its --out folder
RUN_FILES = ("best.npz", "last.npz", "metrics.json", "loss_curve.png", "test_faces.png")


class RunExistsError(OutputError):
    """A new training run would replace the files of an earlier run."""


def claim_run_folder(out: str | os.PathLike, resume: str | os.PathLike | None = None,
                     overwrite: bool = False) -> list[Path]:
    """Make ``out`` ready for a training run; returns the stale temporaries it removed.

    A folder holding an earlier run's files (:data:`RUN_FILES`) is refused (:class:`RunExistsError`)
    unless ``overwrite``, or ``resume`` is that folder's own ``last.npz`` (continuing in place). The
    hidden temporaries of an earlier killed run of the folder are deleted: the run now owns it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: the folder is not writable")
    in_place = resume is not None and same_file(resume, out / "last.npz")
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if earlier and not in_place and not overwrite:
        raise RunExistsError(
            f"--out {out}: holds an earlier run ({', '.join(earlier)}); choose another --out, continue it with"
            f" --resume {out / 'last.npz'}, or replace it with --overwrite"
        )
    return remove_stale_temporaries(out, RUN_FILES)
