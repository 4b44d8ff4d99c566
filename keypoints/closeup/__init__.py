"""Close-up stages: small networks that read the eyes and the mouth up close and move their points.

Why: the face network reads the whole face in 96 x 96 pixels, where an eye is about 16 pixels wide. It places
the eyes and the mouth largely from the rest of the face: behind the browline glasses of matplotlib's Grace
Hopper portrait it took the frames' top rims for the brows and put both eyes 11-12 pixels (an eighth of her
eye distance) below the pupils, on the lower lids; in scikit-image's astronaut's broad smile it put the mouth
corners on the lower lip. Read up close, the pupil, the lids and the lips' corners decide.

How (:mod:`~keypoints.closeup.stage`): after the face network's passes, each region (:data:`~.stage.REGIONS`:
the eyes, then the mouth) is cut out of the image the predictor was given (full resolution, gray), framed
from the current points: centred on the region's points, ``side`` eye distances wide, turned so that the eyes
are level, ``size`` x ``size`` pixels. The left eye is mirrored, so one network reads both eyes as right eyes;
the mouth is read as it is and mirrored, and the two reads averaged. The reads replace the region's points,
``passes`` times, each framed from the last (:class:`keypoints.models.CloseupNet`).

Training (:mod:`~keypoints.closeup.training`) frames the crops from the true points with a random error like
the face network's, keeps the epoch whose points are best on the held-out faces framed from the face network's
own predictions (what prediction reads), and writes the networks into the same checkpoint (``meta.closeup``,
entries ``closeup``).
"""
from .stage import DEFAULT_STAGES, EYES, MOUTH, REGIONS, CloseupStage, Region, crop_matrices, read_region

__all__ = ["DEFAULT_STAGES", "EYES", "MOUTH", "REGIONS", "CloseupStage", "Region", "crop_matrices", "read_region"]
