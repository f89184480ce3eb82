"""The colours of segmentation masks: one palette for the masks ``senet predict`` writes,
the overlays and the gate pictures."""

from __future__ import annotations

import numpy as np

__all__ = ["PALETTE", "colour_labels"]

#: Class colours (RGB) of the masks and overlays: class 0 (background) black, then
#: colours that stay apart for the colour-blind first (Okabe-Ito), then more.
PALETTE = np.array(
    [
        (0, 0, 0),
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (255, 255, 255),
        (128, 128, 128),
        (153, 0, 0),
        (0, 102, 0),
        (102, 0, 153),
        (255, 153, 204),
        (153, 102, 51),
        (0, 204, 204),
    ],
    np.uint8,
)


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """RGB colours ``(*labels.shape, 3)`` of a label map (:data:`PALETTE`, cycled)."""
    return PALETTE[np.asarray(labels) % len(PALETTE)]
