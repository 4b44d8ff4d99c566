"""Keypoints in the wild: what a face's 68 points tell beyond themselves.

- :mod:`~keypoints.wild.pose`: head pose (yaw, pitch, roll) with ``cv2.solvePnP``, and its axes drawn;
- :mod:`~keypoints.wild.align`: aligned face chips (a similarity onto eye and mouth template positions);
- :mod:`~keypoints.wild.blink`: the eye aspect ratio and a blink counter over video frames;
- :mod:`~keypoints.wild.confidence`: a calibrated confidence per face from the plain and mirrored passes;
- :mod:`~keypoints.wild.formats`: JSON, JSON Lines, CSV and iBUG ``.pts`` outputs, written atomically.
"""
