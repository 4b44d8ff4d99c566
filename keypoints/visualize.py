"""What the network sees: the first layer's kernels, and the feature maps of any conv block for one face.

Figures are drawn with matplotlib's object API on an Agg canvas (``matplotlib.figure.Figure``), never
through ``pyplot``: nothing here changes the global backend or leaves figures open, so it works on a
headless machine and inside other programs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import tinynet
from tinynet.nn.module import Module

from .crops import rescale_size
from .image import DEFAULT_MAX_PIXELS
from .predictor import Predictor


def _network(model) -> Module:
    """A ``Predictor`` or a model -> the model."""
    net = model.model if isinstance(model, Predictor) else model
    if not isinstance(net, Module):
        raise TypeError(f"expected a keypoints Predictor or a tinynet Module, got {type(model).__name__}")
    return net


def first_conv(model) -> tuple[str, np.ndarray]:
    """``(name, weight)`` of the first layer with a 4-D weight ``(C_out, C_in, kh, kw)``: the first conv."""
    for name, module in _network(model).named_modules():
        weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if weight is not None and weight.data.ndim == 4:
            return name, weight.data
    raise ValueError(f"{type(_network(model)).__name__} has no convolution layer (no parameter with a 4-D weight)")


def _save(figure, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .files import save_figure

    FigureCanvasAgg(figure)
    return save_figure(figure, path, dpi=figure.dpi)


def _grid(count: int) -> tuple[int, int]:
    """``(rows, columns)`` about twice as wide as tall: 32 panels -> 4 x 8, 33 -> 4 x 9, 65 -> 6 x 12."""
    columns = min(count, max(4, min(12, int(math.ceil(math.sqrt(2 * count))))))
    return int(math.ceil(count / columns)), columns


def show_filters(model, path: str | Path) -> np.ndarray:
    """Save a grid of the first conv layer's kernels (32 kernels of k x k for NaimishNet) to ``path``.

    All kernels share one symmetric diverging colour scale (red positive, blue negative, white 0), so
    their strengths compare; a layer with several input channels shows each kernel's mean over them.
    Returns the plotted ``(C_out, kh, kw)`` array.
    """
    from matplotlib.figure import Figure

    name, weight = first_conv(model)
    kernels = weight.astype(np.float64).mean(axis=1)  # (C_out, kh, kw)
    limit = float(np.abs(kernels).max()) or 1.0
    rows, columns = _grid(len(kernels))
    figure = Figure(figsize=(1.3 * columns, 1.3 * rows + 0.7), dpi=100)
    figure.suptitle(f"{name}: {weight.shape[0]} kernels {weight.shape[2]}x{weight.shape[3]}"
                    f" (input channels {weight.shape[1]})")
    image = None
    for k, kernel in enumerate(kernels):
        axis = figure.add_subplot(rows, columns, k + 1)
        image = axis.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        axis.set_title(str(k), fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    if image is not None:
        figure.colorbar(image, ax=figure.axes, shrink=0.6)
    _save(figure, path)
    return kernels.astype(weight.dtype)


def _resolve_layer(net: Module, layer: int | str) -> int:
    """``2``, ``"2"`` or ``"features.2"`` -> index into ``net.features``."""
    features = getattr(net, "features", None)
    if features is None:
        raise ValueError(f"{type(net).__name__} has no 'features' block to take feature maps from")
    count = len(features)
    names = [f"features.{i}" for i in range(count)]
    if isinstance(layer, str):
        text = layer.strip()
        if text.startswith("features."):
            text = text[len("features."):]
        if not text.lstrip("-").isdigit():
            raise ValueError(f"layer {layer!r}: expected an index 0..{count - 1} or a name {names[0]} .. {names[-1]}")
        layer = int(text)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"layer must be an int or a name like 'features.2', got {type(layer).__name__}")
    index = int(layer) + count if layer < 0 else int(layer)
    if not 0 <= index < count:
        raise ValueError(f"layer {layer}: the features block has layers 0..{count - 1} ({', '.join(names)})")
    return index


def _read(image, max_pixels: int) -> np.ndarray:
    """An image array as given, or a path read by ``keypoints.data.read_image`` (float32 gray; a file over
    ``max_pixels`` is refused)."""
    if isinstance(image, (str, Path)):
        from .data import read_image

        return read_image(image, max_pixels)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an image array or a path, got {type(image).__name__}")
    return image


def feature_maps(model, image, layer: int | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, np.ndarray, np.ndarray]:
    """Run one face crop through ``model.features`` up to and including ``layer``.

    Parameters
    ----------
    model : Predictor or NaimishNet
        A bare model gets a checkpoint's evaluation preprocessing for its input size.
    image : array (any format ``Predictor.preprocess`` takes) or path of a face crop
    layer : int or str
        Index into ``model.features`` or its name, ``"features.2"`` (negative indices count from the end).
    max_pixels : int
        A path to an image with more pixels is refused (``keypoints.data.DataError``) before decoding.

    Returns
    -------
    name : str, ``"features.K"``
    crop : (S, S) float32, what the network reads
    maps : (C, H', W') float32, the layer's output for that crop (eval mode, under ``tinynet.no_grad()``)
    """
    net = _network(model)
    predictor = model if isinstance(model, Predictor) else None
    index = _resolve_layer(net, layer)
    was_training = net.training
    try:
        if predictor is None:
            size = int(getattr(net, "input_size"))
            predictor = Predictor(net, {"input_size": size, "rescale": rescale_size(size)})
        crop, _ = predictor.preprocess(_read(image, max_pixels))
        net.eval()
        x = crop[None, None]  # (1, 1, S, S)
        with tinynet.no_grad():
            for i in range(index + 1):
                x = net.features[i](x)
    finally:
        net.train(was_training)
    return f"features.{index}", crop, x[0]


def show_maps(model, image, layer: int | str, path: str | Path, max_maps: int = 64,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Save the input crop and the feature maps of ``layer`` for one face to ``path``.

    Shows at most ``max_maps`` channels (the first ones), each on its own colour scale (a map's pattern,
    not its magnitude, is what tells what the channel responds to). Returns all maps ``(C, H', W')``.
    """
    from matplotlib.figure import Figure

    if max_maps < 1:
        raise ValueError(f"show_maps: max_maps must be >= 1, got {max_maps}")
    name, crop, maps = feature_maps(model, image, layer, max_pixels)
    module = _network(model).features[int(name.split(".")[1])]
    shown = maps[:max_maps]
    rows, columns = _grid(len(shown) + 1)
    figure = Figure(figsize=(1.4 * columns, 1.4 * rows + 0.7), dpi=100)
    more = f", first {len(shown)} shown" if len(shown) < len(maps) else ""
    figure.suptitle(f"{name} ({type(module).__name__}): {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]}{more}")
    axis = figure.add_subplot(rows, columns, 1)
    axis.imshow(crop, cmap="gray", vmin=0.0, vmax=1.0)
    axis.set_title("input", fontsize=8)
    axis.set_xticks([])
    axis.set_yticks([])
    for k, feature in enumerate(shown):
        axis = figure.add_subplot(rows, columns, k + 2)
        axis.imshow(feature, cmap="viridis", interpolation="nearest")
        axis.set_title(str(k), fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    _save(figure, path)
    return maps
