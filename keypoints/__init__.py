"""68-point facial keypoint detection on tinynet.

- ``keypoints.data``, ``keypoints.transforms``, ``keypoints.loader``: the YouTube Faces data set, upstream
  transforms plus augmentation, a cached, prefetching loader.
- ``keypoints.models``: the NaimishNet-style 4-conv / 3-FC network.
- ``keypoints.train`` (``examples/train_keypoints.py``), ``keypoints.evaluate`` (``python -m keypoints evaluate``).
- ``keypoints.load_predictor(path).predict(face_crops)``: keypoints for any face crop.
"""
from .models import NaimishNet, naimishnet
from .predictor import Predictor, load_predictor

__all__ = ["NaimishNet", "naimishnet", "Predictor", "load_predictor"]
