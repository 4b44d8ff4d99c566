"""What the photo commands (``predict``, ``align``, ...) take in and write out: the files to process,
where each one's picture goes, and :class:`InputError` for one input of a batch that cannot be used."""
from __future__ import annotations

import os
from pathlib import Path

from ..files import check_image_output, refuse_input_as_output

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm")


class InputError(ValueError):
    """One input of a batch cannot be used (the batch goes on): ``str`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def expand_inputs(paths: list[str]) -> tuple[list[Path], bool]:
    """Files to process and whether there are several (a folder always counts as several).

    A folder contributes its image files (by extension, sorted, not recursive); a file named on the
    command line is always tried, whatever its extension, so a non-image gets a clear message.
    """
    files: list[Path] = []
    several = len(paths) > 1
    for name in paths:
        path = Path(name)
        if path.is_dir():
            several = True
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            files.append(path)
    return files, several


def output_paths(files: list[Path], several: bool, out: str | None, suffix: str) -> list[Path | None]:
    """Where each input's picture goes: ``-o`` itself for one input, ``-o/<stem><suffix>.png`` for several
    (a counter keeps equal stems from different folders apart). No output may be one of the inputs."""
    if out is None:
        return [None] * len(files)
    target = Path(out)
    if not several and not target.is_dir() and not str(out).endswith(("/", os.sep)):  # "DIR/" is a folder
        refuse_input_as_output(target, files)
        return [check_image_output(target)]
    if target.exists() and not target.is_dir():
        raise InputError(f"-o {target}", "with several inputs -o must be a folder, and this is a file")
    target.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    paths = []
    for file in files:
        name, k = f"{file.stem}{suffix}.png", 1
        while name in used:
            k += 1
            name = f"{file.stem}{suffix}-{k}.png"
        used.add(name)
        paths.append(target / name)
        refuse_input_as_output(paths[-1], files)
    return paths
