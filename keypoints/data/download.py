"""Finding the data set on disk (``--data``, else ``$KEYPOINTS_DATA``, else ``./data``) or downloading the
official archive, atomically: an interrupted download or unpacking leaves nothing behind."""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .csv import SPLITS, DataError, csv_name

OFFICIAL_URL = (
    "https://s3.amazonaws.com/video.udacity-data.com/topher/2018/May/5aea1b91_train-test-data/train-test-data.zip"
)
ENV_VAR = "KEYPOINTS_DATA"
DEFAULT_DIR = "data"


class DownloadError(RuntimeError):
    """Downloading or unpacking the data set failed; nothing half-written was left behind."""



def holds_data(folder: str | os.PathLike) -> bool:
    """True when ``folder`` has both CSV files and both image folders."""
    folder = Path(folder)
    return all((folder / csv_name(s)).is_file() and (folder / s).is_dir() for s in SPLITS)


def _data_root(folder: Path) -> Path | None:
    """``folder`` if it holds the data, else its first sub-folder that does (an archive unpacked into a
    folder of its own, e.g. ``data/train-test-data/``), else ``None``."""
    if holds_data(folder):
        return folder.resolve()
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and holds_data(sub):
                return sub.resolve()
    return None


def _destination(data: str | os.PathLike | None) -> Path:
    """The data folder by precedence: the ``--data`` argument, else ``$KEYPOINTS_DATA``, else ``./data``."""
    if data is not None:
        return Path(data)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(DEFAULT_DIR)


def find_data_dir(data: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the data, or ``None``.

    Only the folder chosen by precedence is looked at (the ``data`` argument, else ``$KEYPOINTS_DATA``,
    else ``./data``), so an explicit choice never silently falls back to another copy. The folder itself
    or one sub-folder of it may hold the data (``training/``, ``test/`` and both CSVs, the layout
    ``train-test-data.zip`` unpacks to). The result is an absolute path.
    """
    return _data_root(_destination(data))


def _download(url: str, out, quiet: bool) -> int:
    """Stream ``url`` into the open binary file ``out`` with a progress bar; return the byte count.

    Raises ``DownloadError`` on a connection/HTTP error or when fewer bytes arrive than the server's
    ``Content-Length`` promised (``http.client`` returns a short read then, rather than raising)."""
    # here, not at the top: urllib.request and http.client take 30 ms to import, and every command line
    # (python -m keypoints predict too) imports this module through keypoints.data
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    from tqdm.auto import tqdm

    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="facial keypoints data", disable=quiet
            ) as bar:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
        raise DownloadError(f"downloading {url} failed after {received} bytes: {exc}") from exc
    if total is not None and received != total:
        raise DownloadError(
            f"downloading {url} failed: the connection closed after {received} of {total} bytes (incomplete download)"
        )
    return received


def _archive_prefix(archive: zipfile.ZipFile, url: str) -> str:
    """The folder inside the archive that holds the data (``""`` for upstream's zip, whose members are
    ``training/...``, ``test/...`` and the two CSVs at the top level); ``DownloadError`` if it has none."""
    names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
    candidates = sorted((n for n in names if n.endswith(csv_name("training"))), key=len)
    for candidate in candidates:
        prefix = candidate[: -len(csv_name("training"))]
        if prefix and not prefix.endswith("/"):
            continue
        has_test_csv = prefix + csv_name("test") in names
        has_images = all(any(n.startswith(f"{prefix}{s}/") and not n.endswith("/") for n in names) for s in SPLITS)
        if has_test_csv and has_images:
            return prefix
    raise DownloadError(
        f"the archive from {url} does not contain the expected members "
        f"({csv_name('training')}, {csv_name('test')}, training/*, test/*)"
    )


def _extract(archive: zipfile.ZipFile, prefix: str, target: Path) -> None:
    """Extract the members under ``prefix`` (not macOS' ``__MACOSX`` litter) into ``target``.

    ``ZipFile.extract`` already drops ``..`` and absolute paths; reading every member checks its CRC."""
    for info in archive.infolist():
        name = info.filename
        if name.startswith("__MACOSX/") or not name.startswith(prefix) or Path(name).name.startswith("._"):
            continue
        archive.extract(info, target)


def ensure_data(data: str | os.PathLike | None = None, url: str = OFFICIAL_URL, quiet: bool = False) -> Path:
    """Return the data folder, downloading and unpacking the official archive first if needed.

    The destination is the ``data`` argument if given, else ``$KEYPOINTS_DATA`` if set, else ``./data``.
    The zip is streamed (with a tqdm progress bar unless ``quiet``) into a temporary file next to the
    destination, checked to be a zip holding both CSVs and both image folders, extracted into a temporary
    folder next to the destination and renamed into place in one step, so an interrupted run never leaves
    a half-written data folder: on any failure (connection error, short download, not a zip, missing
    members, Ctrl-C) the temporary file and folder are removed and :class:`DownloadError` is raised.

    Raises
    ------
    DataError
        The destination exists, is not empty and does not hold the data (we do not write into it).
    DownloadError
        The download or the archive failed; nothing was left behind.
    """
    found = find_data_dir(data)
    if found is not None:
        return found
    destination = _destination(data).absolute()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise DataError(
            f"{destination} exists but does not hold the data ({csv_name('training')}, {csv_name('test')}, "
            f"training/, test/); empty it or choose another folder (--data or ${ENV_VAR})"
        )
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    archive_path: Path | None = None
    unpack_dir: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{destination.name}-", suffix=".zip.part", dir=parent)
        archive_path = Path(name)
        with os.fdopen(fd, "wb") as out:
            size = _download(url, out, quiet)
        if not zipfile.is_zipfile(archive_path):
            head = archive_path.read_bytes()[:16]
            raise DownloadError(f"{url} did not send a zip archive ({size} bytes starting with {head!r})")
        unpack_dir = Path(tempfile.mkdtemp(prefix=f".{destination.name}-unpack-", dir=parent))
        try:
            with zipfile.ZipFile(archive_path) as archive:
                prefix = _archive_prefix(archive, url)
                _extract(archive, prefix, unpack_dir)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"the archive from {url} is corrupt: {exc}") from exc
        root = unpack_dir / prefix if prefix else unpack_dir
        if not holds_data(root):
            raise DownloadError(f"the archive from {url} did not unpack to the expected layout")
        os.chmod(root, 0o755)  # mkdtemp made it private (0700)
        if destination.is_dir():
            destination.rmdir()  # empty (checked above); rename cannot replace a folder
        os.replace(root, destination)
    finally:
        if archive_path is not None and archive_path.exists():
            archive_path.unlink()
        if unpack_dir is not None and unpack_dir.exists():
            shutil.rmtree(unpack_dir, ignore_errors=True)
    if not quiet:
        print(f"Downloaded the facial keypoints data from {url} to {destination}")
    return destination.resolve()

