"""The eye stage: a small network that reads each eye up close and moves its six points.

Why: the face network reads the whole face in 96 x 96 pixels, where an eye is about 16 pixels wide. It
places the eyes largely from the rest of the face: behind the browline glasses of matplotlib's Grace Hopper
portrait it took the frames' top rims for the brows and put both eyes 11-12 pixels (an eighth of her eye
distance) below the pupils, on the lower lids. Read up close, the pupil and the lids decide.

How (:mod:`~keypoints.eyes.stage`): after the face network's passes, each eye is cut out of the image the
predictor was given (full resolution, gray), framed from the current points: centred on that eye's six
points, ``side`` eye distances wide, turned so the eyes are level, ``size`` x ``size`` pixels; the left
eye mirrored, so one network reads both as right eyes (:class:`keypoints.models.EyeNet`). Its points
replace 36-47; ``passes`` times, each pass framed from the last.

Training (:mod:`~keypoints.eyes.training`) frames the crops from the true points with a random error
(shift, zoom, turn) like the face stage's error, keeps the epoch whose points are best on the held-out faces
framed from the face stage's own predictions (what prediction reads), and writes the network into the
same checkpoint (``meta.eye_stage``, entries ``eyes``).
"""
from .stage import EyeStage, eye_matrices, read_eyes

__all__ = ["EyeStage", "eye_matrices", "read_eyes"]
