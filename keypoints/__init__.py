"""68-point facial keypoint detection on tinynet.

- ``keypoints.data``, ``keypoints.transforms``, ``keypoints.loader``: the YouTube Faces data set, upstream
  transforms plus augmentation, a cached, prefetching loader.
- ``keypoints.models``: the NaimishNet-style 4-conv / 3-FC network.
- ``keypoints.train`` (``examples/train_keypoints.py``), ``keypoints.evaluate`` (``python -m keypoints evaluate``).
- ``keypoints.load_predictor(path).predict(face_crops)``: keypoints for any face crop;
  ``predictor.predict_faces(photo)``: every face in a photo (OpenCV's Haar cascade), ``keypoints.overlay``,
  ``keypoints.video``, ``keypoints.visualize`` (``python -m keypoints predict|filter|video|show-filters|show-maps``).
- ``keypoints.wild``: head pose, aligned face chips, eye aspect ratio and blinks, a confidence per face, and the
  JSON / JSON Lines / CSV / iBUG ``.pts`` outputs (``python -m keypoints align``, ``predict --pose --format``).
"""
import tinynet  # first: it configures the thread pools before NumPy loads (see tinynet/_numba.py)

from .detect import FaceKeypoints, detect_faces, draw_keypoints, predict_faces
from .models import NaimishNet, naimishnet
from .overlay import add_sunglasses, make_sunglasses
from .predictor import PRETRAINED, Predictor, load_predictor
from .wild.align import AlignedFace, AlignError, align_face, align_faces
from .wild.blink import BlinkCounter, eye_aspect_ratio, eye_aspects
from .wild.confidence import face_confidence
from .wild.formats import read_pts, to_pts
from .wild.pose import HeadPose, PoseError, draw_pose, head_pose

__all__ = [
    "NaimishNet", "naimishnet", "Predictor", "load_predictor", "PRETRAINED",
    "detect_faces", "predict_faces", "draw_keypoints", "FaceKeypoints", "add_sunglasses", "make_sunglasses",
    "head_pose", "HeadPose", "PoseError", "draw_pose", "align_faces", "align_face", "AlignedFace", "AlignError",
    "eye_aspect_ratio", "eye_aspects", "BlinkCounter", "face_confidence", "read_pts", "to_pts",
]
