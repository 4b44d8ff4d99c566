"""The One Euro filter: a face's keypoints smoothed over the frames of a video (``keypoints.wild.video``).

Why smoothing: a keypoint network run frame by frame jitters by a pixel or two even on a still face
(the Haar box itself wobbles, and with it the crop the network sees). Averaging over a fixed window
removes the jitter but makes the points trail behind a moving head. The One Euro filter (Casiez,
Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in Interactive
Systems", CHI 2012) adapts its cutoff frequency to the speed: heavy smoothing when the face is still,
almost none while it moves.
"""
from __future__ import annotations

import math

import numpy as np


def smoothing_factor(dt: float, cutoff: float) -> float:
    """Exponential smoothing weight of a first-order low-pass filter with cutoff ``cutoff`` (Hz) sampled
    every ``dt`` seconds: ``alpha = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi cutoff)``."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One Euro filter (Casiez et al., CHI 2012) on arrays of any shape.

    For a sample ``x`` at time ``t`` (seconds), with ``x_hat`` the previous output and ``dt`` the time
    since the previous sample::

        dx      = (x - x_hat) / dt                        the speed
        dx_hat  = dx_hat + a(dt, d_cutoff) (dx - dx_hat)  the speed, low-passed at d_cutoff
        cutoff  = min_cutoff + beta |dx_hat|
        x_hat   = x_hat + a(dt, cutoff) (x - x_hat)       with a(dt, f) = 1 / (1 + 1 / (2 pi f dt))

    Parameters
    ----------
    min_cutoff : float
        Cutoff frequency (Hz) when the signal is still: lower removes more jitter and lags more on
        slow motion. 1 Hz is the paper's starting point.
    beta : float
        How fast the cutoff rises with speed (per unit of the signal per second): higher follows fast
        motion more closely. 0 makes it a plain exponential low-pass filter.
    d_cutoff : float
        Cutoff (Hz) of the speed's own low-pass filter; 1 Hz as in the paper.
    norm_axis : int or None
        If set, ``|dx_hat|`` is the Euclidean norm along this axis (``-1`` for ``(..., 2)`` points: x and
        y of a point share one cutoff, so the filter is isotropic); else per element.

    The first sample passes unchanged. Samples may come at irregular times (a face missed on a frame);
    times must increase.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, norm_axis: int | None = None):
        if not min_cutoff > 0 or not d_cutoff > 0:
            raise ValueError(f"OneEuroFilter: min_cutoff and d_cutoff must be positive, got {min_cutoff}, {d_cutoff}")
        if not beta >= 0:
            raise ValueError(f"OneEuroFilter: beta must be >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.norm_axis = norm_axis
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes unchanged."""
        self.x_hat: np.ndarray | None = None
        self.dx_hat: np.ndarray | None = None
        self.t_prev: float | None = None

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.array(x, dtype=np.float64)  # a copy: the state never aliases the caller's array
        t = float(t)
        if self.x_hat is None:
            self.x_hat, self.dx_hat, self.t_prev = x, np.zeros_like(x), t
            return x.copy()
        if x.shape != self.x_hat.shape:
            raise ValueError(f"OneEuroFilter: expected samples of shape {self.x_hat.shape}, got {x.shape}")
        dt = t - self.t_prev
        if not dt > 0:
            raise ValueError(f"OneEuroFilter: times must increase, got {t} after {self.t_prev}")
        dx = (x - self.x_hat) / dt
        self.dx_hat = self.dx_hat + smoothing_factor(dt, self.d_cutoff) * (dx - self.dx_hat)
        if self.norm_axis is None:
            speed = np.abs(self.dx_hat)
        else:
            speed = np.linalg.norm(self.dx_hat, axis=self.norm_axis, keepdims=True)
        cutoff = self.min_cutoff + self.beta * speed
        tau = 1.0 / (2.0 * np.pi * cutoff)
        alpha = 1.0 / (1.0 + tau / dt)
        # x_hat + alpha (x - x_hat), not alpha x + (1 - alpha) x_hat: a constant signal stays exact
        self.x_hat = self.x_hat + alpha * (x - self.x_hat)
        self.t_prev = t
        return self.x_hat.copy()
