"""Keypoints from face crops with a trained checkpoint: ``keypoints.load_predictor(path).predict(images)``.

Every crop goes through exactly the deterministic evaluation pipeline the network was validated with
(``keypoints.crops``: the one preprocessing path, shared with validation and test evaluation): grayscale in
[0, 1] -> ``rescale_face`` (shorter side to ``meta.rescale``) -> ``center_crop(S)`` -> network ->
de-normalise. Then, ``refine_passes`` times (the checkpoint says how many), the face is framed again from
those points (``keypoints.framing.frame_matrix``: their centroid and spread put where training put them)
and read again. If the checkpoint names ``test_frames``, the last pass reads the face in each of those
frames around the canonical one (the jitter training applies to it) and averages the points. With flip
averaging every read is averaged with the mirrored face's, framed as training frames a mirrored face
(``keypoints.framing.mirror_frame``). The exact
inverse of the last pass's map brings the points back to the crop's own pixel coordinates, whatever its
size, colour or dtype. Last, if the checkpoint has close-up stages (``keypoints.closeup``), the eyes and the
mouth are read up close from the gray image at its own resolution and their points replaced, ``closeup_passes``
times.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

import tinynet

from .checkpoint import flip_permutation_of
from .framing import (DATASET_FRAMING, PointFraming, checked_test_frames, frame_change, frame_jitter, frame_matrix,
                      mirror_frame, reads_test_frames, warp_crop)
from .models import NaimishNet
from .geometry import (
    NUM_KEYPOINTS,
    apply_affine,
    denormalize_keypoints,
    flip_image,
    flip_matrix,
    map_to_original,
    normalize_keypoints,
)
from .crops import center_crop, rescale_face
from .closeup.stage import REGIONS, checked_closeup, read_region
from .image import to_gray_float32
from .speed import checked_speed, int8_quantized, int8_runnable, speed_settings


#: the model that ships with the package: naimishnet(96) trained with the default recipe (README.md)
PRETRAINED = Path(__file__).resolve().parent / "weights" / "naimishnet96.npz"


class Prediction(NamedTuple):
    points: np.ndarray  # (N, K, 2) in the input images' pixels (K = 68 for the iBUG layout)
    normalized: np.ndarray  # (N, 2K) network outputs (normalised crop coordinates)
    affines: np.ndarray  # (N, 3, 3) input pixels -> crop pixels
    # with flip averaging, the last pass's plain and mirrored points before averaging, (N, K, 2) in input
    # pixels (keypoints.wild.confidence reads their disagreement; the face network's reads, before the close-up
    # stages); None without
    plain: np.ndarray | None = None
    mirrored: np.ndarray | None = None
    # with test frames, each frame's read of the last pass mapped back (flip-averaged if flip), (J, N, K, 2) in
    # input pixels (the confidence's "test_frames" signal; the face network's reads, before the close-up stages)
    frame_reads: np.ndarray | None = None


class Predictor:
    """A network in eval mode plus the preprocessing its checkpoint describes.

    The network runs on the engine ``tinynet.backends.numba.enabled`` selects when it is called: the Numba kernels
    (the default), or plain NumPy inside ``tinynet.backends.numba.flags(enabled=False)`` (no Numba start-up, for a
    few faces; the rule the command lines follow is :mod:`keypoints.engine`).

    Attributes
    ----------
    input_size : int
        S, the side of the square crop the network reads.
    rescale : int
        The shorter side every image is rescaled to before the centre crop.
    flip : bool
        Average each prediction with the mirrored face's (test-time augmentation).
    refine_passes : int
        How many times the face is framed again from its own points and read again.
    refine_tolerance : float
        A face whose new frame would move its crop's corners by less than this fraction of the crop side
        (:func:`keypoints.framing.frame_change`) is not read again: it is framed as its points say already, and
        its points stay. 0 (the default): every face is read again. The pass that reads test frames reads
        every face (the confidence compares those reads).
    framing : PointFraming
        Where the refinement frame puts the points (measured on the training faces).
    confidence_signal : str
        What the confidence reads (``meta.confidence_signal``, :data:`keypoints.wild.confidence.SIGNALS`): the
        last pass's test frames, or the flip disagreement (a checkpoint calibrated before the test frames were).
    confidence_calibration : (float, float) or None
        ``(a, b)`` of :mod:`keypoints.wild.confidence`, fitted for this network and signal on its validation
        faces at the end of training; None (no confidence, ``no_confidence_reason`` says why) for a checkpoint
        without it, or when these settings do not read the faces as the fit did.
    test_frames : tuple of (shift_x, shift_y, zoom, degrees)
        Frames around the canonical one that the last refinement pass reads, averaging the points
        (``keypoints.framing.frame_jitter``); ``()``: the canonical frame only. Unused without refinement.
    closeup : dict of region name -> keypoints.closeup.CloseupStage
        The checkpoint's close-up stages that run ({}: the face network's points are final); a stage runs when
        its network is given in ``closeup_models`` (:func:`load_predictor` gives the checkpoint's).
    closeup_passes : int or None
        How many times each close-up network reads its region (None: as each stage says; 0: not at all).
    int8_linears : bool
        The networks run with int8 weights in their Linear layers, each BatchNorm1d after one folded into it
        (``tinynet.nn.quantize_int8(..., fold_batchnorm=True)``, applied to copies: the models given stay float).
        Faster for the few crops of a photo; the shipped model's test NME is unchanged.
    num_points : int
        K, the points of each face (68 for the iBUG layout; another K for a model trained on your own points).
    flip_permutation : (K,) int or None
        How the points swap sides in a mirror (``meta.flip_permutation``); None: the model cannot flip-average.
    """

    def __init__(self, model: NaimishNet, meta: dict, flip: bool | None = None, refine_passes: int | None = None,
                 test_frames: Sequence | None = None, closeup_models: dict | None = None,
                 closeup_passes: int | None = None, int8_linears: bool = False, refine_tolerance: float = 0.0):
        if not isinstance(int8_linears, (bool, np.bool_)):
            raise ValueError(f"Predictor: int8_linears must be True or False, got {int8_linears!r}")
        self.int8_linears = bool(int8_linears)
        self.model = int8_runnable(model, self.int8_linears)
        self.meta = dict(meta)
        self.input_size = int(meta["input_size"])
        self.rescale = int(meta["rescale"])
        self.num_points = int(meta.get("num_points", NUM_KEYPOINTS))
        self.flip_permutation = flip_permutation_of({"flip_permutation": None, **meta, "num_points": self.num_points})
        self.flip = bool(meta.get("flip_test", False)) if flip is None else bool(flip)
        if self.flip and self.flip_permutation is None:
            raise ValueError(f"Predictor: flip averaging needs the mirror permutation of the model's {self.num_points}"
                             " points, and its checkpoint has none (train with --flip-file, or predict without flip)")
        passes = meta.get("refine_passes", 0) if refine_passes is None else refine_passes
        if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or not 0 <= passes <= 4:
            raise ValueError(f"Predictor: refine_passes must be an int in 0..4, got {passes!r}")
        self.refine_passes = int(passes)
        if isinstance(refine_tolerance, (bool, np.bool_)) or not isinstance(refine_tolerance, (int, float, np.integer,
                np.floating)) or not 0.0 <= refine_tolerance < 1.0:
            raise ValueError(f"Predictor: refine_tolerance must be a number in [0, 1) (a fraction of the crop side),"
                             f" got {refine_tolerance!r}")
        self.refine_tolerance = float(refine_tolerance)
        framing = meta.get("framing")
        self.framing = DATASET_FRAMING if framing is None else PointFraming.from_dict(framing)
        frames = meta.get("test_frames") if test_frames is None else test_frames
        try:
            self.test_frames = checked_test_frames(frames)
        except ValueError as exc:
            raise ValueError(f"Predictor: {exc}") from None
        self.confidence_signal = str(meta.get("confidence_signal") or "flip")
        calibration = meta.get("confidence_calibration")
        self.no_confidence_reason = self._why_no_confidence(calibration, meta)
        self.confidence_calibration = None if self.no_confidence_reason else tuple(map(float, calibration))
        models = closeup_models or {}
        stages = checked_closeup(meta.get("closeup") or {})
        self.closeup = {name: stage for name, stage in stages.items() if name in models}
        self.closeup_models = {name: int8_runnable(models[name], self.int8_linears) for name in self.closeup}
        passes = closeup_passes
        if passes is not None and (isinstance(passes, bool) or not isinstance(passes, (int, np.integer))
                                   or not 0 <= passes <= 4):
            raise ValueError(f"Predictor: closeup_passes must be an int in 0..4, got {passes!r}")
        if passes and not self.closeup:
            raise ValueError(f"Predictor: closeup_passes={passes} needs close-up stages, and this checkpoint has none")
        self.closeup_passes = None if passes is None else int(passes)

    def _why_no_confidence(self, calibration, meta: dict) -> str | None:
        """Why these settings give no confidence (None: they give one). A calibration holds for the reads it was
        fitted on: the signal's reads must be made, and a test-frame spread taken with the model's own test
        frames and flip averaging (other frames, or reads without flip averaging, spread differently)."""
        if calibration is None:
            return ("this model has no confidence calibration (benchmarks/calibrate_confidence.py --model CKPT --write"
                    " fits one on its validation faces)")
        if self.confidence_signal == "flip":
            return None if self.flip else "it comes from the flip disagreement, and these settings read no mirror images"
        if not reads_test_frames(self.test_frames, self.refine_passes):
            return "it comes from the spread of the last pass's test frames, and these settings read none"
        if self.test_frames != checked_test_frames(meta.get("test_frames")) or self.flip != bool(meta.get("flip_test")):
            return ("it was calibrated on the spread of the model's own test frames, read with its own flip averaging,"
                    " and these settings read them otherwise")
        return None

    def __repr__(self) -> str:
        return (
            f"Predictor(input_size={self.input_size}, rescale={self.rescale}, flip={self.flip},"
            f" refine_passes={self.refine_passes},"
            f"{f' refine_tolerance={self.refine_tolerance:g},' if self.refine_tolerance else ''}"
            f" test_frames={len(self.test_frames)},"
            f" closeup={self.closeup_reads()}{', int8_linears=True' if self.int8_linears else ''})"
        )

    def closeup_reads(self) -> dict[str, int]:
        """How many times each close-up stage reads its region (``{}``: none runs)."""
        reads = {name: stage.passes if self.closeup_passes is None else self.closeup_passes
                 for name, stage in self.closeup.items()}
        return {name: passes for name, passes in reads.items() if passes}

    def _rescaled(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One gray float32 image -> ``(rescaled (h, w) float32, affine (3, 3) image pixels -> rescaled pixels)``."""
        return rescale_face(gray, self.rescale)  # keypoints.crops: the one path

    def _center_crop(self, rescaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return center_crop(rescaled, self.input_size)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image (gray/BGR/BGRA, uint8/uint16/float, any size) -> ``(crop (S, S) float32, affine (3, 3))``:
        the first pass's centre crop. ``affine`` maps the image's pixel coordinates to the crop's.
        """
        rescaled, to_rescaled = self._rescaled(to_gray_float32(np.asarray(image)))
        crop, crop_matrix = self._center_crop(rescaled)
        return crop, crop_matrix @ to_rescaled

    def _network(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        """``(N, S, S) -> (N, 2K)`` in batches, eval mode, nothing cached."""
        outputs = []
        with tinynet.no_grad():
            for start in range(0, len(crops), batch_size):
                outputs.append(self.model(crops[start : start + batch_size, None]))
        return np.concatenate(outputs) if outputs else np.zeros((0, 2 * self.num_points), np.float32)

    def _crop_outputs(self, crops: np.ndarray, batch_size: int, mirrored_crops: np.ndarray | None = None,
                      mirror: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(N, S, S)`` crops -> ``(out (N, 2K) normalised outputs, passes)``.

        With ``self.flip``, ``out`` is the average (in crop pixels) of the plain and the mirrored pass and
        ``passes`` is ``(2, N, K, 2)``: those two passes in crop pixels, the mirrored one mapped back onto
        the face (their disagreement is what :mod:`keypoints.wild.confidence` reads). Without, ``passes`` is None.
        ``mirrored_crops`` are the faces' mirror images as the network reads them and ``mirror`` ``(3, 3)`` the
        map from ``crops``' pixels to theirs (its own inverse); None: the crops flipped, ``flip_matrix(S)``.
        """
        if not self.flip:
            return self._network(crops, batch_size), None
        if mirrored_crops is None:
            mirrored_crops, mirror = flip_image(crops, batched=True), flip_matrix(self.input_size)
        k, n = self.num_points, len(crops)
        # the faces and their mirror images in one batch: one pass through the network, not two (the first
        # fully connected layer's 25 MB of weights are read once; on the first 80 test photos 46-58 against
        # 50-66 ms a photo for the network, within the machine's noise)
        both = self._network(np.concatenate([crops, mirrored_crops]), batch_size)
        out, mirrored = both[:n], both[n:].reshape(-1, k, 2)
        # the points found on the mirrored face, mapped back onto the face (the mirror is its own inverse)
        unmirrored = apply_affine(denormalize_keypoints(mirrored, self.input_size).astype(np.float64), mirror)
        unmirrored = unmirrored[:, self.flip_permutation]
        plain = denormalize_keypoints(out.reshape(-1, k, 2), self.input_size)
        averaged = normalize_keypoints(0.5 * (plain + unmirrored), self.input_size).reshape(-1, 2 * k)
        return averaged.astype(np.float32), np.stack([plain, unmirrored])

    def _framed_outputs(self, rescaled: list, frames: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_crop_outputs` for the crops ``frames`` ``(N, 3, 3)`` (rescaled -> crop pixels) cut from
        ``rescaled``; with flip averaging, the mirrored faces are framed as training frames them
        (:func:`keypoints.framing.mirror_frame`), each cut from its image once."""
        size = self.input_size
        crops = np.stack([warp_crop(image, frame, size) for image, frame in zip(rescaled, frames)])
        if not self.flip:
            return self._crop_outputs(crops, batch_size)
        mirror = mirror_frame(size, self.framing)
        mirrored = np.stack([warp_crop(image, mirror @ frame, size) for image, frame in zip(rescaled, frames)])
        return self._crop_outputs(crops, batch_size, mirrored, mirror)

    def _test_frame_outputs(self, rescaled: list, frames: np.ndarray,
                            batch_size: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The last refinement pass with ``test_frames``: ``(out, passes)`` as :meth:`_crop_outputs` gives them
        for the canonical crops ``frames`` (rescaled -> crop pixels) describe, each the mean over the test frames,
        and ``each (J, N, K, 2)``: every frame's points in the canonical crop's pixels (the confidence's signal).

        Test frame ``(shift_x, shift_y, zoom, degrees)`` is the canonical frame jittered as training jitters it
        (``frame_jitter @ frame``); its points go back into the canonical crop with that jitter's exact
        inverse. The mean of ``out`` is taken in normalised units, an affine function of the crop pixels (and
        so of the image pixels): it is the mean in either. ``passes`` (the plain and the mirrored reads, for
        the confidence) are averaged the same way, in crop pixels.
        """
        size, n, k = self.input_size, len(rescaled), self.num_points
        jitters = [frame_jitter(size, self.framing, (dx, dy), zoom, degrees) for dx, dy, zoom, degrees in self.test_frames]
        # the J * N crops, frame by frame, in one batch: fewer calls
        outs, reads = self._framed_outputs(rescaled * len(jitters), np.concatenate([jitter @ frames for jitter in jitters]),
                                           batch_size)
        outs = outs.reshape(len(jitters), n, 2 * k)
        reads = None if reads is None else reads.reshape(2, len(jitters), n, k, 2).astype(np.float64)
        total, each = np.zeros((n, 2 * k)), []
        for j, (test_frame, jitter) in enumerate(zip(self.test_frames, jitters)):
            out = outs[j]
            if test_frame != (0.0, 0.0, 1.0, 0.0):  # the canonical frame needs no way back
                back = map_to_original(denormalize_keypoints(out.reshape(-1, k, 2).astype(np.float64), size), jitter)
                out = normalize_keypoints(back, size).reshape(-1, 2 * k)
                if reads is not None:
                    reads[:, j] = [map_to_original(read, jitter) for read in reads[:, j]]
            total += out
            each.append(denormalize_keypoints(out.reshape(-1, k, 2).astype(np.float64), size))
        passes = None if reads is None else reads.mean(axis=1)  # (2, N, K, 2)
        return (total / len(self.test_frames)).astype(np.float32), passes, np.stack(each)

    def predict_details(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> Prediction:
        """Like :meth:`predict`, also returning the last pass's outputs and the per-image affines
        (image pixels -> the last pass's crop pixels)."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise ValueError("Predictor.predict: expected a batch of images; wrap a single (H, W) image in a list")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"Predictor.predict: batch_size must be a positive integer, got {batch_size!r}")
        grays = [to_gray_float32(_checked_image(index, image)) for index, image in enumerate(images)]
        prepared = [self._rescaled(gray) for gray in grays]
        if not prepared:
            empty = np.zeros((0, self.num_points, 2), np.float32)
            return Prediction(empty, np.zeros((0, 2 * self.num_points), np.float32), np.zeros((0, 3, 3)))
        rescaled = [image for image, _ in prepared]
        to_rescaled = np.stack([matrix for _, matrix in prepared])  # (N, 3, 3) image -> rescaled pixels
        centred = [self._center_crop(image) for image in rescaled]
        crops = np.stack([crop for crop, _ in centred])  # (N, S, S)
        frames = np.stack([matrix for _, matrix in centred])  # (N, 3, 3) rescaled -> crop pixels
        out, passes = self._crop_outputs(crops, batch_size)
        frame_reads = None  # (J, N, K, 2) crop pixels, when the last pass reads test frames
        for index in range(self.refine_passes):
            source = map_to_original(denormalize_keypoints(out.reshape(-1, self.num_points, 2), self.input_size), frames)
            framed = np.stack([frame_matrix(points, self.input_size, self.framing) for points in source])
            if self.test_frames and index == self.refine_passes - 1:
                frames = framed
                out, passes, frame_reads = self._test_frame_outputs(rescaled, frames, batch_size)
                continue
            moving = np.flatnonzero(frame_change(frames, framed, self.input_size) >= self.refine_tolerance)
            if len(moving) == len(frames):  # every face is read again (always, with refine_tolerance 0)
                frames = framed
                out, passes = self._framed_outputs(rescaled, frames, batch_size)
            elif len(moving):  # only the faces whose frame moves: the others keep their frame and its points
                frames[moving] = framed[moving]  # frames, out and passes are this call's own arrays
                out[moving], read = self._framed_outputs([rescaled[i] for i in moving], frames[moving], batch_size)
                if passes is not None:
                    passes[:, moving] = read
        affines = frames @ to_rescaled  # image pixels -> the last pass's crop pixels
        crop_points = denormalize_keypoints(out.reshape(-1, self.num_points, 2), self.input_size)
        points = map_to_original(crop_points, affines).astype(np.float32)
        reads = self.closeup_reads()
        if reads:
            for name, times in reads.items():  # REGIONS' order: the eyes, then the mouth (framed by the new eyes)
                points = read_region(self.closeup_models[name], REGIONS[name], self.closeup[name], grays, points, times)
            points = points.astype(np.float32)
            moved = [index for name in reads for index in REGIONS[name].points]
            out = out.reshape(-1, self.num_points, 2).copy()  # the normalised outputs follow (evaluate's nMSE)
            out[:, moved] = normalize_keypoints(apply_affine(points[:, moved].astype(np.float64), affines), self.input_size)
            out = out.reshape(-1, 2 * self.num_points)
        if frame_reads is not None:
            frame_reads = np.stack([map_to_original(read, affines) for read in frame_reads]).astype(np.float32)
        if passes is None:
            return Prediction(points, out, affines, frame_reads=frame_reads)
        plain, mirrored = (map_to_original(crop, affines).astype(np.float32) for crop in passes)
        return Prediction(points, out, affines, plain, mirrored, frame_reads)

    def predict(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Face crops -> keypoints ``(N, K, 2)`` (x, y) in each crop's own pixel coordinates.

        ``images``: a list of images of any sizes, or an array ``(N, H, W)`` / ``(N, H, W, C)``; uint8,
        uint16 or float in [0, 1]; gray, BGR or BGRA (OpenCV's channel order).
        """
        return self.predict_details(images, batch_size).points


def _checked_image(index: int, image) -> np.ndarray:
    """Image ``index`` of a batch, refused with a message naming it if it is empty or a float image with
    values outside [0, 1] (a uint8 picture converted to float without dividing by 255, or NaN)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"Predictor.predict: image {index} has shape {image.shape}; expected (H, W) or (H, W, C)"
                         " with H, W >= 1")
    if image.dtype.kind == "f" and not (np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1):
        finite = image[np.isfinite(image)]
        values = f"values in [{finite.min():g}, {finite.max():g}]" if finite.size else "no finite values"
        raise ValueError(
            f"Predictor.predict: image {index} is {image.dtype} with {values}"
            f"{' and NaN/inf' if finite.size < image.size else ''}; float images must be in [0, 1] (divide a"
            " uint8 picture by 255, or pass it as uint8)"
        )
    return image


def load_predictor(
    path: str | Path | None = None, flip: bool | None = None, refine_passes: int | None = None,
    test_frames: Sequence | None = None, closeup_passes: int | None = None, speed: str = "accurate",
    int8_linears: bool | None = None, refine_tolerance: float | None = None,
) -> Predictor:
    """Build the network a checkpoint describes, load its weights and return a ``Predictor``.

    ``path=None`` loads the model that ships with the package (``PRETRAINED``). ``flip``, ``refine_passes``
    and ``test_frames`` override the checkpoint's test-time flip averaging, number of refinement passes and
    frames of the last pass (``None`` keeps the checkpoint's choice; ``test_frames=()`` reads the canonical
    frame only). ``closeup_passes`` overrides how often each close-up stage reads its region (0: not at all).
    ``int8_linears`` runs the Linear layers with int8 weights and ``refine_tolerance`` skips the second read of a face
    already framed as its points say (None: as ``speed`` says; see :class:`Predictor`).
    ``speed`` (:data:`keypoints.speed.SPEEDS`): ``"fast"`` changes the settings not given as
    :func:`keypoints.speed.speed_settings` says.
    """
    from .checkpoint import read_checkpoint

    checked_speed(speed, "load_predictor")  # before reading the file
    checkpoint, model = read_checkpoint(PRETRAINED if path is None else path)  # every meta field validated
    given = {"flip": flip, "refine_passes": refine_passes, "test_frames": test_frames, "closeup_passes": closeup_passes,
             "int8_linears": int8_linears, "refine_tolerance": refine_tolerance}
    settings = {**speed_settings(speed, checkpoint["meta"]), **{k: v for k, v in given.items() if v is not None}}
    closeup_models = checkpoint.get("closeup_models") or {}
    if settings.get("int8_linears"):  # the models built here are nobody else's: quantised in place, not copied
        model = int8_quantized(model)
        closeup_models = {name: int8_quantized(net) for name, net in closeup_models.items()}
    return Predictor(model, checkpoint["meta"], closeup_models=closeup_models, **settings)
