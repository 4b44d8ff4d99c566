"""Train the facial keypoint network and evaluate it on the 770 test faces (or your own ``.pts`` data set's).

    python examples/train_keypoints.py                      # the default recipe (under 30 min on 2 cores)
    python examples/train_keypoints.py --recipe reference   # the classic PyTorch project's recipe
    python examples/train_keypoints.py --limit 128 --epochs 1   # a smoke run
    python examples/train_keypoints.py --data DIR --format pts --flip-file flip.txt   # your own .pts points

See ``--help`` for every option.
"""
import sys

from keypoints.cli import run, train_main

if __name__ == "__main__":
    sys.exit(run(train_main))
