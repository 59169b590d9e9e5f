"""Pictures of powder patterns: a profile with its strongest peaks labelled by hkl."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xrdcore.diffraction.pxrd import PeakList


def plot_profile(path: str | Path, two_theta: np.ndarray, profile: np.ndarray, peaks: PeakList | None = None,
                 *, title: str = "", labels: int = 8) -> Path:
    """Save a PNG of ``profile`` over ``two_theta`` (degrees); the ``labels`` strongest peaks of
    ``peaks`` are marked with their (hkl)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=120)
    ax.plot(two_theta, profile, lw=0.8, color="#1f4e79")
    if peaks is not None and len(peaks):
        height = np.interp(peaks.two_theta, two_theta, profile)
        separation = 0.015 * (two_theta[-1] - two_theta[0])  # labels closer than this overprint
        labelled: list[float] = []
        for i in np.argsort(-peaks.intensity):
            if len(labelled) == labels:
                break
            if any(abs(peaks.two_theta[i] - x) < separation for x in labelled):
                continue
            labelled.append(peaks.two_theta[i])
            h, k, l = (int(v) for v in peaks.hkl[i])
            ax.annotate(f"({h} {k} {l})", (peaks.two_theta[i], height[i]), xytext=(0, 4),
                        textcoords="offset points", ha="center", fontsize=7, rotation=90)
    ax.set_xlabel("2θ (degrees)")
    ax.set_ylabel("relative intensity")
    ax.set_xlim(two_theta[0], two_theta[-1])
    ax.set_ylim(0, 1.25 * max(float(np.max(profile)), 1e-12))
    ax.set_title(title)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (never a half-written picture)."""
    import io

    from xrdcore.storage import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
