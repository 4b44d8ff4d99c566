"""Keypoints from face crops with a trained checkpoint: ``keypoints.load_predictor(path).predict(images)``.

Every crop goes through exactly the deterministic evaluation pipeline the network was validated with:
grayscale in [0, 1] -> Rescale (shorter side to ``round(S * 250 / 224)``) -> CenterCrop(S) -> network ->
de-normalise -> the exact inverse of the rescale-and-crop map, so the points come back in the crop's own
pixel coordinates whatever its size, colour or dtype.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

import tinynet

from .models import NaimishNet
from .transforms import (
    FLIP_PERMUTATION,
    crop_sample,
    denormalize_keypoints,
    map_to_original,
    normalize_keypoints,
    rescale_matrix,
    rescaled_shape,
    resize_image,
    to_gray_float32,
)


#: the model that ships with the package: naimishnet(96) trained with the default recipe (README.md)
PRETRAINED = Path(__file__).resolve().parent / "weights" / "naimishnet96.npz"


class Prediction(NamedTuple):
    points: np.ndarray  # (N, 68, 2) in the input images' pixels
    normalized: np.ndarray  # (N, 136) network outputs (normalised crop coordinates)
    affines: np.ndarray  # (N, 3, 3) input pixels -> crop pixels
    # with flip averaging, the two passes before averaging, (N, 68, 2) in input pixels (for confidence)
    plain: np.ndarray | None = None
    mirrored: np.ndarray | None = None


class Predictor:
    """A network in eval mode plus the preprocessing its checkpoint describes.

    Attributes
    ----------
    input_size : int
        S, the side of the square crop the network reads.
    rescale : int
        The shorter side every image is rescaled to before the centre crop.
    flip : bool
        Average each prediction with the mirrored face's (test-time augmentation).
    """

    def __init__(self, model: NaimishNet, meta: dict, flip: bool | None = None):
        self.model = model.eval()
        self.meta = dict(meta)
        self.input_size = int(meta["input_size"])
        self.rescale = int(meta["rescale"])
        self.flip = bool(meta.get("flip_test", False)) if flip is None else bool(flip)

    def __repr__(self) -> str:
        return f"Predictor(input_size={self.input_size}, rescale={self.rescale}, flip={self.flip})"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image (gray/BGR/BGRA, uint8/uint16/float, any size) -> ``(crop (S, S) float32, affine (3, 3))``.

        ``affine`` maps the image's pixel coordinates to the crop's.
        """
        gray = to_gray_float32(np.asarray(image))
        height, width = gray.shape
        new_h, new_w = rescaled_shape(height, width, self.rescale)
        rescaled = resize_image(gray, new_h, new_w)
        crop, _, crop_matrix, _ = crop_sample(
            rescaled, np.zeros((0, 2), np.float32), self.input_size, None, center=True, return_affine=True
        )
        return crop, crop_matrix @ rescale_matrix(height, width, new_h, new_w)

    def _network(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        """``(N, S, S) -> (N, 136)`` in batches, eval mode, nothing cached."""
        outputs = []
        with tinynet.no_grad():
            for start in range(0, len(crops), batch_size):
                outputs.append(self.model(crops[start : start + batch_size, None]))
        return np.concatenate(outputs) if outputs else np.zeros((0, 136), np.float32)

    def predict_details(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> Prediction:
        """Like :meth:`predict`, also returning the raw outputs and the per-image affines."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise ValueError("Predictor.predict: expected a batch of images; wrap a single (H, W) image in a list")
        pairs = [self.preprocess(image) for image in images]
        if not pairs:
            empty = np.zeros((0, 68, 2), np.float32)
            return Prediction(empty, np.zeros((0, 136), np.float32), np.zeros((0, 3, 3)))
        crops = np.stack([crop for crop, _ in pairs])  # (N, S, S)
        affines = np.stack([affine for _, affine in pairs])  # (N, 3, 3)
        out = self._network(crops, batch_size)
        passes = None
        if self.flip:
            mirrored = self._network(np.ascontiguousarray(crops[:, :, ::-1]), batch_size).reshape(-1, 68, 2)
            # point j of the mirrored face is point FLIP_PERMUTATION[j] of the face, at x' = S - 1 - x
            mirrored = denormalize_keypoints(mirrored, self.input_size)
            mirrored[..., 0] = self.input_size - 1 - mirrored[..., 0]
            unmirrored = np.empty_like(mirrored)
            unmirrored[:, FLIP_PERMUTATION] = mirrored
            plain_points = denormalize_keypoints(out.reshape(-1, 68, 2), self.input_size)
            passes = [map_to_original(p, affines).astype(np.float32) for p in (plain_points, unmirrored)]
            crop_points = 0.5 * (plain_points + unmirrored)
            out = normalize_keypoints(crop_points, self.input_size).reshape(-1, 136)
        crop_points = denormalize_keypoints(out.reshape(-1, 68, 2), self.input_size)
        points = map_to_original(crop_points, affines).astype(np.float32)
        return Prediction(points, out, affines, *(passes or ()))

    def predict(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Face crops -> keypoints ``(N, 68, 2)`` (x, y) in each crop's own pixel coordinates.

        ``images``: a list of images of any sizes, or an array ``(N, H, W)`` / ``(N, H, W, C)``; uint8,
        uint16 or float in [0, 1]; gray, BGR or BGRA (OpenCV's channel order).
        """
        return self.predict_details(images, batch_size).points

    def predict_faces(self, image: np.ndarray, detector: str | None = None) -> list:
        """Every face of a photo: ``[FaceKeypoints(box (4,) int (x, y, w, h), points (68, 2), confidence), ...]``.

        Detects the faces (``detector``, default ``"haar"``), frames each as the training images were
        framed, and predicts all of them in one batch: see :func:`keypoints.detect.predict_faces`.
        """
        from .detect import predict_faces  # imported here: detect is optional for crop-only users

        return predict_faces(self, image, detector="haar" if detector is None else detector)


def load_predictor(path: str | Path | None = None, flip: bool | None = None) -> Predictor:
    """Build the network a checkpoint describes, load its weights and return a ``Predictor``.

    ``path=None`` loads the model that ships with the package (``PRETRAINED``). ``flip`` overrides the
    checkpoint's test-time flip averaging (``None`` keeps the recipe's choice).
    """
    path = PRETRAINED if path is None else path
    checkpoint = tinynet.load(path)
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or meta.get("arch") != "naimishnet" or "model" not in checkpoint:
        raise ValueError(f"{path}: not a keypoints checkpoint (no 'meta' with arch 'naimishnet' and a 'model')")
    model = NaimishNet(int(meta["input_size"]), dropout=float(meta.get("dropout", 0.4)), rng=np.random.default_rng(0))
    model.load_state_dict(checkpoint["model"])
    return Predictor(model, meta, flip=flip)
