"""``save`` and ``load``: checkpoints as a plain ``.npz`` archive, never pickle.

A checkpoint is a nested mapping whose leaves are arrays or JSON values, for example::

    tinynet.serialization.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict(), "epoch": 3, "rng": rng.bit_generator.state},
        "runs/last.npz", metadata={"val_loss": 0.0123},
    )
    checkpoint = tinynet.serialization.load("runs/last.npz")
    model.load_state_dict(checkpoint["model"])

Format (readable with ``np.load`` alone):

- every array is one entry of the archive, named by its path through the nesting joined with
  ``"/"`` (state-dict keys already use ``"."``): ``"model/0.weight"``, ``"optimizer/state/0/exp_avg"``
  (a path zip cannot store as is, e.g. one with a NUL character, gets another unique name);
- the entry ``"__tinynet__"`` is a 0-d unicode array holding one JSON document with the format
  version, the user's ``metadata`` and the structure (``tree``): every dict is ``{"dict": {...}}``,
  every list ``{"list": [...]}``, every array ``{"array": "<entry name>"}``, every NumPy scalar
  ``{"scalar": "<entry name>"}``, and every other leaf is the JSON value itself. Wrapping containers
  keeps user keys from ever being mistaken for markers.

Why not pickle: unpickling runs arbitrary code, so a checkpoint downloaded from somewhere could take
over the machine. ``load`` uses ``np.load(allow_pickle=False)`` and refuses anything else.

Round trip: arrays come back bit-identical with their dtype and shape; ints (of any size, e.g. a
PCG64 state), floats (including nan/inf), strings, bools and ``None`` come back as themselves; tuples
come back as lists; dict keys come back as strings (int keys such as an optimizer's parameter
indices are written as ``"0"``, ``"1"``, which ``Optimizer.load_state_dict`` accepts).

Writes are atomic: the archive is written to a temporary file in the destination's directory,
flushed to disk (``fsync``) and moved over the destination with ``os.replace``; if anything fails the
temporary file is removed and an existing checkpoint at ``path`` is untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple

import numpy as np

from .nn.module import Module

__all__ = ["save", "load", "load_metadata", "load_structure", "ArrayInfo"]

MARKER = "__tinynet__"
_FORMAT = "tinynet-checkpoint"
_VERSION = 1
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
_NPY_MAGIC = b"\x93NUMPY"
#: deepest nesting ``load`` follows; a deeper header is refused as corrupt (not a RecursionError)
MAX_DEPTH = 64


# ---------------------------------------------------------------------------------------------- save
def save(obj: Module | Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, Any] | None = None,
         *, compress: bool = False) -> None:
    """Write a module's state dict, or a nested checkpoint, to ``path`` atomically.

    Parameters
    ----------
    obj : Module or mapping
        A ``Module`` (its ``state_dict()`` is saved) or a mapping whose leaves are ndarrays, NumPy
        scalars or JSON values (``None``, bool, int, float, str), nested in dicts, lists and tuples.
        Keys must be strings or ints and must not contain ``"/"``.
    path : str or path-like
        Destination, used exactly as given (no ``.npz`` suffix is appended). Its directory must exist.
    metadata : mapping, optional
        JSON values stored beside the data (e.g. the epoch, the validation loss, the git commit);
        read back with ``load_metadata`` without loading the arrays.
    compress : bool
        Deflate the entries (smaller, slower); float weights compress poorly, so the default is off.

    Raises
    ------
    TypeError
        A leaf or key of an unsupported type (the error gives its path, e.g. ``model/0.weight``).
    ValueError
        An object array (it could only be stored with pickle), a key containing ``"/"``, or two keys
        that collide once ints are written as strings.
    """
    path = os.fspath(path)
    if isinstance(obj, Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"save: expected a Module or a mapping (e.g. a state dict), got {type(obj).__name__}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"save: metadata must be a mapping of JSON values, got {type(metadata).__name__}")
    # everything is validated and encoded before the file system is touched
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, "", arrays)
    if metadata is not None:
        _check_json(metadata, "metadata")
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "metadata": metadata, "tree": tree})

    def write(file: BinaryIO) -> None:
        compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(file, mode="w", compression=compression, allowZip64=True) as archive:
            entries = [(MARKER, np.array(header))] + list(arrays.items())
            for name, array in entries:
                # force_zip64: arrays over 2 GiB need it and its size is not known in advance (as np.savez)
                with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    _atomic_write(path, write)


def _encode(value: Any, where: str, arrays: dict[str, np.ndarray]) -> Any:
    """The JSON tree of ``value``; arrays are added to ``arrays`` under their path ``where``."""
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.hasobject:
            raise ValueError(
                f"save: {_describe(where)} is an array of dtype {value.dtype}, which holds Python objects and could"
                " only be saved with pickle; convert it to a numeric or string dtype"
            )
        name = _entry_name(where, arrays)
        arrays[name] = np.asarray(value)
        return {"array" if isinstance(value, np.ndarray) else "scalar": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        items: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                name = str(int(key))
            elif isinstance(key, str):
                name = key
            else:
                raise TypeError(f"save: keys must be strings or ints, got {key!r} in {_describe(where)}")
            if "/" in name:
                raise ValueError(f"save: key {name!r} in {_describe(where)} contains '/', which joins nested keys")
            if name in items:
                raise ValueError(f"save: {_describe(where)} has two keys that both become {name!r}")
            items[name] = _encode(item, f"{where}/{name}" if where else name, arrays)
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        return {"list": [_encode(item, f"{where}/{index}" if where else str(index), arrays)
                         for index, item in enumerate(value)]}
    raise TypeError(
        f"save: cannot save {_describe(where)} of type {type(value).__name__}; leaves must be ndarrays, NumPy"
        " scalars, None, bool, int, float or str (save a Parameter's .data, a Module's state_dict())"
    )


def _entry_name(where: str, taken: Mapping[str, Any]) -> str:
    """The archive entry of the array at path ``where``: the path itself whenever zip stores it unchanged.

    Zip cuts names at a NUL, turns ``"\\"`` into ``"/"`` on Windows and cannot encode lone surrogates; such
    paths (and any clash with the header's name or an earlier entry) get another unique name. The tree
    records the name, so this only affects how the archive looks in ``np.load(path).files``.
    """
    try:
        where.encode("utf-8")
        safe = "\x00" not in where and "\\" not in where
    except UnicodeEncodeError:
        safe = False
    base = where if safe else "_"
    name, count = base, 0
    while name == MARKER or name in taken:
        count += 1
        name = f"{base}~{count}"
    return name


def _check_json(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is made of JSON types with string keys."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"save: keys of {where} must be strings, got {key!r}")
            _check_json(item, f"{where}/{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}/{index}")
        return
    raise TypeError(f"save: {where} must hold only JSON values (None, bool, int, float, str, list, dict),"
                    f" got {type(value).__name__}")


def _describe(where: str) -> str:
    return repr(where) if where else "the saved object"


def _atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then ``os.replace`` it onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 honours the umask, so the checkpoint gets the permissions a plain open()
    # would give it (tempfile.mkstemp would make it private, 0o600)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:  # also on KeyboardInterrupt: never leave a half-written temporary behind
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # make the rename itself durable; directories cannot be opened (or need not be synced) on Windows
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------------------------------------- load
def load(path: str | os.PathLike, check_structure: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``save``: the same nesting, arrays bit-identical, keys as strings.

    ``check_structure``, if given, is called with what :func:`load_structure` returns before any array is read,
    from the same opening of the file (a caller that checks the structure first reads the file once); an
    exception it raises propagates and nothing more is read.

    Returns
    -------
    dict
        For a saved ``Module``, its state dict (``{"0.weight": array, ...}``), ready for
        ``module.load_state_dict``.

    Raises
    ------
    FileNotFoundError, PermissionError
        As ``open`` does.
    ValueError
        The file is not a tinynet checkpoint: a pickle, a single ``.npy``, random bytes, a truncated
        or corrupt archive, an archive with an object array, or an ``.npz`` without tinynet's header.
        The message names the path.
    """
    path = os.fspath(path)
    with _open_checkpoint(path) as (archive, header):
        tree = _checked_tree(header, archive, path)  # refuses entries the header does not name, before reading any
        if check_structure is not None:
            check_structure(_decode(tree, archive, path, set(), 0, info_only=True))
        return _decode(tree, archive, path, set(), 0)


class ArrayInfo(NamedTuple):
    """What ``load_structure`` reports for an array: read from the entry's ``.npy`` header only."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scalar: bool  # a NumPy scalar (loads as ``array[()]``), not an ndarray


def load_structure(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's nesting with every array replaced by its :class:`ArrayInfo`, without reading (or
    decompressing) any array's data: check a checkpoint's keys, shapes and dtypes against a model before
    ``load`` reads it. Raises ``ValueError`` as ``load`` does."""
    path = os.fspath(path)
    with _open_checkpoint(path) as (archive, header):
        tree = _checked_tree(header, archive, path)
        return _decode(tree, archive, path, set(), 0, info_only=True)


def _checked_tree(header: dict[str, Any], archive: Any, path: str) -> Any:
    """The header's tree, once it names exactly the archive's entries (each at most once)."""
    tree = header["tree"]
    if not (isinstance(tree, dict) and set(tree) == {"dict"}):
        raise ValueError(f"load: {path!r} has a corrupt tinynet header (the top level is not a dict)")
    named: list[str] = []
    _entry_names(tree, named, path, 0)
    unexpected = sorted(set(archive.files) - set(named) - {MARKER})
    if unexpected:
        raise ValueError(f"load: {path!r} has entries its header does not mention: {unexpected[:5]}")
    missing = sorted(set(named) - set(archive.files))
    if missing:
        raise ValueError(f"load: {path!r} is corrupt: its header names an entry {missing[0]!r} that is missing")
    if len(named) != len(set(named)):
        raise ValueError(f"load: {path!r} has a corrupt tinynet header (an entry is named twice)")
    return tree


def _entry_names(node: Any, names: list[str], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"load: {path!r} has a corrupt tinynet header (nested more than {MAX_DEPTH} deep)")
    if isinstance(node, dict) and len(node) == 1:
        ((kind, payload),) = node.items()
        if kind == "dict" and isinstance(payload, dict):
            for item in payload.values():
                _entry_names(item, names, path, depth + 1)
        elif kind == "list" and isinstance(payload, list):
            for item in payload:
                _entry_names(item, names, path, depth + 1)
        elif kind in ("array", "scalar") and isinstance(payload, str):
            names.append(payload)


def load_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``metadata`` given to ``save`` (``None`` if there was none), without reading the arrays."""
    path = os.fspath(path)
    with _open_checkpoint(path) as (_, header):
        return header.get("metadata")


@contextlib.contextmanager
def _open_checkpoint(path: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Open ``path`` as an npz archive and parse tinynet's header, or raise a ``ValueError`` naming ``path``."""
    with open(path, "rb") as file:
        start = file.read(len(_NPY_MAGIC))
        if not start.startswith(_ZIP_MAGIC):
            raise ValueError(f"load: {path!r} is not a tinynet checkpoint: {_guess_kind(start)}")
        file.seek(0)
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as exc:  # zipfile, zlib and numpy's own header parsing all raise different types
            raise _corrupt(path, exc) from exc
        with archive:
            if MARKER not in archive.files:
                raise ValueError(
                    f"load: {path!r} is an .npz archive but not a tinynet checkpoint (it has no {MARKER!r}"
                    " entry); read a plain archive with np.load"
                )
            raw = _read_entry(archive, MARKER, path)
            try:
                header = json.loads(str(raw[()])) if raw.ndim == 0 and raw.dtype.kind == "U" else None
            except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
                raise ValueError(f"load: {path!r} has a corrupt tinynet header: {exc}") from exc
            if not isinstance(header, dict) or header.get("format") != _FORMAT or "tree" not in header:
                raise ValueError(f"load: {path!r} has a corrupt tinynet header")
            if header.get("version") != _VERSION:
                raise ValueError(
                    f"load: {path!r} uses checkpoint format version {header.get('version')!r}; this tinynet"
                    f" reads version {_VERSION}"
                )
            yield archive, header


def _read_entry(archive: Any, name: str, path: str) -> np.ndarray:
    try:
        return archive[name + ".npy"]  # the full member name, so an entry called "x.npy" is unambiguous
    except Exception as exc:  # object arrays (numpy's ValueError), bad CRC, truncated data, ...
        raise _corrupt(path, exc, f"entry {name!r}") from exc


def _decode(node: Any, archive: Any, path: str, used: set[str], depth: int, info_only: bool = False) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"load: {path!r} has a corrupt tinynet header (nested more than {MAX_DEPTH} deep)")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((kind, payload),) = node.items()
        if kind == "dict" and isinstance(payload, dict):
            return {key: _decode(item, archive, path, used, depth + 1, info_only) for key, item in payload.items()}
        if kind == "list" and isinstance(payload, list):
            return [_decode(item, archive, path, used, depth + 1, info_only) for item in payload]
        if kind in ("array", "scalar") and isinstance(payload, str):
            if payload not in archive.files:
                raise ValueError(f"load: {path!r} is corrupt: its header names an entry {payload!r} that is missing")
            used.add(payload)
            if info_only:
                return _entry_info(archive, payload, path, scalar=kind == "scalar")
            array = _read_entry(archive, payload, path)
            return array if kind == "array" else array[()]
    raise ValueError(f"load: {path!r} has a corrupt tinynet header (unexpected node {str(node)[:80]})")


def _entry_info(archive: Any, name: str, path: str, scalar: bool) -> ArrayInfo:
    """Shape and dtype from the entry's ``.npy`` header: only its first bytes are read (and inflated)."""
    try:
        with archive.zip.open(name + ".npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
    except Exception as exc:  # bad magic, bad header, truncated member
        raise _corrupt(path, exc, f"entry {name!r}") from exc
    return ArrayInfo(tuple(shape), np.dtype(dtype), scalar)


def _corrupt(path: str, exc: BaseException, what: str = "the archive") -> ValueError:
    return ValueError(
        f"load: cannot read {what} of {path!r}; the file is truncated, corrupt, holds pickled Python objects"
        " (which tinynet never loads) or is not a tinynet checkpoint"
        f" ({type(exc).__name__}: {exc})"
    )


def _guess_kind(start: bytes) -> str:
    """A readable description of a file that is not a zip archive, from its first bytes."""
    if not start:
        return "the file is empty"
    if start.startswith(_NPY_MAGIC[: len(start)]) and len(start) >= 2:
        return "it is a single .npy array (np.save), not an .npz checkpoint (tinynet.serialization.save)"
    if start[:1] == b"\x80":
        return "it looks like a pickle, which tinynet never loads (unpickling can run arbitrary code)"
    return f"it is not an .npz archive (it starts with {start[:6]!r})"
