"""68-point facial keypoint detection on tinynet.

- ``keypoints.geometry``: every affine map and the one horizontal flip; ``keypoints.image``: the one image
  reader and pixel conversion.
- ``keypoints.data``, ``keypoints.transforms``, ``keypoints.crops``, ``keypoints.loader``: the YouTube Faces data
  set, upstream transforms, the one preprocessing path (rescale, centre or augmented crop), a prefetching loader.
- ``keypoints.models``: the NaimishNet-style 4-conv / 3-FC network.
- ``keypoints.train`` (``examples/train_keypoints.py``), ``keypoints.evaluate`` (``python -m keypoints evaluate``).
- ``keypoints.load_predictor(path).predict(face_crops)``: keypoints for any face crop;
  ``keypoints.predict_faces(predictor, photo)``: every face in a photo (OpenCV's Haar cascade).
- ``keypoints.wild``: the application: detection, framing a detected face, drawing, sunglasses, video, the
  command lines (``python -m keypoints predict|filter|video|show-filters|show-maps|align``), head pose, aligned
  face chips, eye aspect ratio and blinks, a confidence per face, and the JSON / JSON Lines / CSV / iBUG ``.pts``
  outputs. ``keypoints.visualize``: filters and feature maps.
"""
import tinynet  # first: it configures the thread pools before NumPy loads (see tinynet/_numba.py)

from .models import NaimishNet, naimishnet
from .predictor import PRETRAINED, Predictor, load_predictor
from .wild.align import AlignedFace, AlignError, align_face, align_faces
from .wild.blink import BlinkCounter, eye_aspect_ratio, eye_aspects
from .wild.confidence import face_confidence
from .wild.detection import detect_faces
from .wild.drawing import draw_keypoints
from .wild.faces import FaceKeypoints, predict_faces
from .data.pts import read_pts, to_pts
from .wild.overlay import add_sunglasses, make_sunglasses
from .wild.pose import HeadPose, PoseError, draw_pose, head_pose

__all__ = [
    "NaimishNet", "naimishnet", "Predictor", "load_predictor", "PRETRAINED",
    "detect_faces", "predict_faces", "draw_keypoints", "FaceKeypoints", "add_sunglasses", "make_sunglasses",
    "head_pose", "HeadPose", "PoseError", "draw_pose", "align_faces", "align_face", "AlignedFace", "AlignError",
    "eye_aspect_ratio", "eye_aspects", "BlinkCounter", "face_confidence", "read_pts", "to_pts",
]
