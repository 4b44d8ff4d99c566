"""Keypoints in the wild: the application around the network, and what a face's 68 points tell beyond themselves.

- :mod:`~keypoints.wild.detection`: face detectors (OpenCV's Haar cascades) and their registry;
- :mod:`~keypoints.wild.face_crop`: a detected box framed as the training faces were, cropped, and mapped back;
- :mod:`~keypoints.wild.faces`: ``predict_faces(predictor, photo)``, every face of a photo in one batch;
- :mod:`~keypoints.wild.drawing`: points, contours and boxes drawn on a photo;
- :mod:`~keypoints.wild.overlay`, :mod:`~keypoints.wild.video`: sunglasses, video in / video out with tracking;
- :mod:`~keypoints.wild.cli`, :mod:`~keypoints.wild.commands`, :mod:`~keypoints.wild.photos`: the command lines;

- :mod:`~keypoints.wild.pose`: head pose (yaw, pitch, roll) with ``cv2.solvePnP``, and its axes drawn;
- :mod:`~keypoints.wild.align`: aligned face chips (a similarity onto eye and mouth template positions);
- :mod:`~keypoints.wild.blink`: the eye aspect ratio and a blink counter over video frames;
- :mod:`~keypoints.wild.confidence`: a calibrated confidence per face from the plain and mirrored passes;
- :mod:`~keypoints.wild.formats`: JSON, JSON Lines, CSV and iBUG ``.pts`` outputs, written atomically.
"""
