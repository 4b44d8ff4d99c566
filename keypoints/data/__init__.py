"""Reading, finding, downloading and caching the 68-point facial keypoints data set, or your own ``.pts`` annotations.

The data set is the one the Udacity "P1_Facial_Keypoints" project distributes (frames of the YouTube
Faces data set), in the upstream layout::

    training_frames_keypoints.csv   header row, then: image name, x0, y0, x1, y1, ..., x67, y67 (pixels)
    training/*.jpg                  3462 images
    test_frames_keypoints.csv       same columns
    test/*.jpg                      770 images

Pieces, from the bottom up:

- :func:`read_image` / :func:`read_keypoints_csv` (``dataset``, ``csv``): strict readers whose errors (:class:`DataError`)
  name the file, and for the CSV the 1-based line and the image.
- :class:`FacialKeypointsDataset`: upstream's ``Dataset`` (``len``, ``dataset[i] -> sample dict``).
- :func:`find_data_dir` / :func:`ensure_data`: locate the data (``--data``, else ``$KEYPOINTS_DATA``,
  else ``./data``) or download the official archive, atomically.
- :class:`PtsDataset` (``pts``): a folder of images with iBUG ``.pts`` files beside them (the 300-W
  layout), any number of points; :func:`read_pts`, :func:`read_flip_file`; :func:`open_split` opens a
  split in either format.
- :func:`prepare_faces`: decode + grayscale + rescale every image ONCE (in a thread pool) into a
  :class:`Faces` cache, from which ``keypoints.loader.DataLoader`` cuts the random crops of every epoch.
"""
from .cache import Faces, prepare_faces
from .csv import MAX_COORDINATE, SPLITS, DataError, csv_name, read_keypoints_csv
from .dataset import FacialKeypointsDataset, read_image
from .pts import DATA_FORMATS, PtsDataset, open_split, read_flip_file, read_pts, to_pts
from .download import DEFAULT_DIR, ENV_VAR, OFFICIAL_URL, DownloadError, ensure_data, find_data_dir, holds_data

__all__ = [
    "Faces", "prepare_faces", "MAX_COORDINATE", "SPLITS", "DataError", "csv_name", "read_keypoints_csv",
    "FacialKeypointsDataset", "read_image", "DEFAULT_DIR", "ENV_VAR", "OFFICIAL_URL", "DownloadError", "ensure_data",
    "find_data_dir", "holds_data", "DATA_FORMATS", "PtsDataset", "open_split", "read_flip_file", "read_pts", "to_pts",
]
