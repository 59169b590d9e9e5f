"""Pictures of diffraction patterns: a powder profile with its strongest peaks labelled by hkl,
and the views of an images simulator side by side."""

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


def plot_images(path: str | Path, images: np.ndarray, *, titles: list[str] | None = None, title: str = "") -> Path:
    """Save a PNG of one structure's views ``(V, C, H, W)`` in [0, 1] side by side; three channels
    are shown as RGB, one as grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (views, 1 or 3 channels, H, W), got shape {images.shape}")
    views = images.shape[0]
    fig, axes = plt.subplots(1, views, figsize=(3.2 * views, 3.6), dpi=120, squeeze=False)
    for v, ax in enumerate(axes[0]):
        picture = images[v].transpose(1, 2, 0)
        ax.imshow(picture[..., 0] if picture.shape[2] == 1 else np.clip(picture, 0, 1),
                  cmap="gray" if picture.shape[2] == 1 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[v], fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (never a half-written picture)."""
    import io

    from xrdcore.storage import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
