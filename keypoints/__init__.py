"""68-point facial keypoint detection on tinynet.

- ``keypoints.data``, ``keypoints.transforms``, ``keypoints.loader``: the YouTube Faces data set, upstream
  transforms plus augmentation, a cached, prefetching loader.
- ``keypoints.models``: the NaimishNet-style 4-conv / 3-FC network.
- ``keypoints.train`` (``examples/train_keypoints.py``), ``keypoints.evaluate`` (``python -m keypoints evaluate``).
- ``keypoints.load_predictor(path).predict(face_crops)``: keypoints for any face crop;
  ``predictor.predict_faces(photo)``: every face in a photo (OpenCV's Haar cascade), ``keypoints.overlay``,
  ``keypoints.video``, ``keypoints.visualize`` (``python -m keypoints predict|filter|video|show-filters|show-maps``).
"""
import tinynet  # first: it configures the thread pools before NumPy loads (see tinynet/_numba.py)

from .detect import FaceKeypoints, detect_faces, draw_keypoints, predict_faces
from .models import NaimishNet, naimishnet
from .overlay import add_sunglasses, make_sunglasses
from .predictor import PRETRAINED, Predictor, load_predictor

__all__ = [
    "NaimishNet", "naimishnet", "Predictor", "load_predictor", "PRETRAINED",
    "detect_faces", "predict_faces", "draw_keypoints", "FaceKeypoints", "add_sunglasses", "make_sunglasses",
]
