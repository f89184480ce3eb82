"""A photo with one face that OpenCV's Haar cascade finds, drawn from the synthetic set.

Shared by the tests of predict, explain and foreign models (tests/ is on ``sys.path`` under
pytest's default import mode).
"""

import cv2
import numpy as np

from senet.data import synthetic_expressions

# where the face is drawn in the 640x480 photo: x, y, side
FACE_AT = (200, 120, 240)


def face_photo() -> np.ndarray:
    """A 640x480 BGR photo with one drawn face (synthetic face 2 of seed 0) at FACE_AT."""
    images, _, _ = synthetic_expressions(14, image_size=48, seed=0)
    x, y, side = FACE_AT
    face = cv2.resize(np.rint(images[2, ..., 0] * 255).astype(np.uint8), (side, side))
    canvas = np.full((480, 640), 128, np.uint8)
    canvas[y : y + side, x : x + side] = face
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
