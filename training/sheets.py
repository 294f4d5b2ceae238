"""A contact sheet: images in a grid, each with a caption under it, on one PNG (errors.png, label_issues.png, the
sheet of `search explain`). matplotlib's object API on the Agg canvas: no display, no shared pyplot state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["contact_sheet"]

TILE_INCHES = 1.6   # an image and room for a two-line caption at 6.5 pt under it


def contact_sheet(images: list[np.ndarray], captions: list[str], path: Path, title: str = "",
                  columns: int = 8) -> Path:
    """``images`` (HxWx3 uint8, any size) with ``captions``, ``columns`` to a row, written to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not images:
        raise ValueError("a contact sheet needs at least one image")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(TILE_INCHES * columns, TILE_INCHES * 1.25 * rows + (0.5 if title else 0.1)), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(grid.flat):
        ax.set_axis_off()
        if k < len(images):
            ax.imshow(images[k], interpolation="nearest" if min(images[k].shape[:2]) < 64 else "antialiased")
            ax.set_title(captions[k], fontsize=6.5, y=-0.02, va="top", pad=0)
    if title:
        fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.32 / fig.get_figheight(),
                        top=1 - (0.45 if title else 0.1) / fig.get_figheight(),
                        wspace=0.08, hspace=0.45)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
