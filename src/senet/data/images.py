"""Images from files: the one image loader, class-per-folder datasets and ``.npz`` arrays.

One path turns pixels into model inputs everywhere in the project: the training and
evaluation readers here, photos and video frames in ``senet.predict``, face crops in
``senet.explain_photos``. :func:`load_image` decodes a file with OpenCV (after checking its
size in the header); :func:`to_model_input` drops alpha, converts colour (gray or RGB),
resizes while the pixels keep their type (uint8 stays uint8) and only then scales to
float32 in ``[0, 1]``. :func:`read_image` is the two together; :func:`fit_images` applies
:func:`to_model_input` to arrays already in memory (FER2013 pixel rows, ``.npz`` files).

Decompression bombs: a small file can claim a huge image. :func:`load_image` refuses a
file over ``SENET_MAX_IMAGE_BYTES`` (default 512 MiB) from its size before reading it, reads
width and height from the header before decoding and refuses more than
``SENET_MAX_IMAGE_PIXELS`` pixels (default 100 million); :func:`read_npz` reads each array's shape and dtype from its
``.npy`` header before loading anything and refuses to need more than
``SENET_MAX_ARRAY_BYTES`` bytes (default 2 GiB). Set the environment variable to raise a
cap, or pass ``max_pixels`` / ``max_bytes``.
"""

from __future__ import annotations

import io
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from senet.checks import check_choice, check_positive, env_cap
from senet.data.base import DataError, infer_class_names, report_problems

__all__ = [
    "DEFAULT_MAX_ARRAY_BYTES",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_ARRAY_BYTES_ENV",
    "MAX_IMAGE_BYTES_ENV",
    "MAX_IMAGE_PIXELS_ENV",
    "array_cap",
    "check_inputs_fit",
    "decode_image",
    "fit_images",
    "list_images",
    "load_npz_arrays",
    "load_image",
    "pixel_cap",
    "pixel_scale",
    "read_class_folders",
    "read_image",
    "read_npz",
    "resize_image",
    "to_bgr8",
    "to_model_input",
    "to_unit_range",
    "write_image",
]

#: The environment variable that caps the pixels (width x height) of an image file, and the
#: cap without it: 100 million (a 10000 x 10000 photo; 300 MB as 8-bit BGR).
MAX_IMAGE_PIXELS_ENV = "SENET_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
#: The environment variable that caps the memory an ``.npz`` may need (its arrays plus the
#: model inputs made from them), and the cap without it: 2 GiB.
MAX_ARRAY_BYTES_ENV = "SENET_MAX_ARRAY_BYTES"
DEFAULT_MAX_ARRAY_BYTES = 2**31
#: The environment variable that caps the bytes of an image file read into memory to be
#: decoded, and the cap without it: 512 MiB (100 million 8-bit BGRA pixels uncompressed is
#: 400 MB; photos are far smaller). Checked from the file's size before it is read.
MAX_IMAGE_BYTES_ENV = "SENET_MAX_IMAGE_BYTES"
DEFAULT_MAX_IMAGE_BYTES = 512 * 2**20
# IMREAD_UNCHANGED would keep alpha but ignore EXIF orientation: a phone photo would reach
# the face detector on its side. ANYDEPTH keeps 16-bit; ANYCOLOR keeps gray gray.
_IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
# the arrays read_npz loads; any others in the file are neither checked nor loaded
_NPZ_ARRAYS = ("x", "y", "class_names")

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)


def array_cap(max_bytes: int | None = None) -> int:
    """The array cap in bytes: ``max_bytes``, else ``SENET_MAX_ARRAY_BYTES``, else 2 GiB."""
    return env_cap(max_bytes, "max_bytes", MAX_ARRAY_BYTES_ENV, DEFAULT_MAX_ARRAY_BYTES)


def pixel_cap(max_pixels: int | None = None) -> int:
    """The pixel cap: ``max_pixels``, else ``SENET_MAX_IMAGE_PIXELS``, else 100 million."""
    return env_cap(max_pixels, "max_pixels", MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)


def check_inputs_fit(source, count: int, height: int, width: int, channels: int) -> None:
    """Refuse, before they are allocated, ``count`` float32 model inputs of ``height`` x
    ``width`` x ``channels`` that need more than ``SENET_MAX_ARRAY_BYTES``: one line naming
    ``source`` (a file or folder) and the variable that raises the cap."""
    cap = array_cap()
    needed = int(count) * int(height) * int(width) * int(channels) * 4
    if needed > cap:
        raise DataError(
            f"{source}: {count} images of {height}x{width}x{channels} need {needed} bytes as "
            f"float32 model inputs, over the cap of {cap} bytes; set {MAX_ARRAY_BYTES_ENV} to "
            "a larger number to allow it"
        )


def _check_size_channels(image_size, channels) -> None:
    check_positive("image_size", image_size, integer=True, allow_none=True)
    check_choice("channels", channels, (1, 3))


# ------------------------------------------------------------------------- pixels


def pixel_scale(array: np.ndarray, *, source: str = "array") -> float:
    """The value that stands for full brightness in ``array``, after checking its values.

    Unsigned integers: their type's maximum (255 for uint8, 65535 for uint16); booleans: 1;
    signed integers must lie in ``[0, 255]``: 255; floats must be finite and lie in
    ``[0, 255]``: 1 when none is above 1, else 255. One decision for the whole array, so a
    batch (or a video frame and the faces cropped from it) is scaled alike.

    Raises:
        DataError: Negative values, values above 255, NaN or inf, or not numbers; the
            message names ``source``.

    Example:
        >>> pixel_scale(np.zeros((2, 2), np.uint16)), pixel_scale(np.full(3, 0.5))
        (65535.0, 1.0)
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return 1.0
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(f"{source}: integer pixel values must lie in [0, 255]")
        return 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{source}: pixels must be numbers, got dtype {array.dtype}")
    if array.size == 0:
        return 1.0
    # min and max carry NaN and inf along, without a full-size temporary
    low, high = float(array.min()), float(array.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise DataError(f"{source}: pixel values contain NaN or inf")
    if low < 0 or high > 255:
        raise DataError(
            f"{source}: pixel values must lie in [0, 1] or [0, 255]; found [{low:g}, {high:g}]"
        )
    return 255.0 if high > 1 else 1.0


def _opencv_pixels(image: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """The same pixels in a type OpenCV converts and resizes, and what 1.0 is in it.

    uint8, uint16 and float32 are kept; booleans and signed integers (already checked to lie
    in [0, 255] by :func:`pixel_scale`) become uint8; wider unsigned integers and other
    floats become float32.
    """
    if image.dtype in (np.uint8, np.uint16, np.float32):
        return image, scale
    if image.dtype == bool or np.issubdtype(image.dtype, np.signedinteger):
        return image.astype(np.uint8), scale
    if np.issubdtype(image.dtype, np.unsignedinteger):
        return (image / scale).astype(np.float32), 1.0
    return image.astype(np.float32), scale


def to_unit_range(array: np.ndarray, *, source: str = "array") -> np.ndarray:
    """Scale pixel values to float32 in ``[0, 1]`` by :func:`pixel_scale` (no resizing).

    Integer arrays are divided by their dtype's maximum (255 for uint8, 65535 for
    uint16); booleans map to 0/1; float arrays already in ``[0, 1]`` are kept and float
    arrays in ``[0, 255]`` are divided by 255. Anything else (negative values, values
    above 255, NaN or inf) raises :class:`DataError` naming ``source``.
    """
    array = np.asarray(array)
    pixels, scale = _opencv_pixels(array, pixel_scale(array, source=source))
    return pixels.astype(np.float32) / np.float32(scale)


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` x ``size`` (or ``(height, width)``) in the image's own type: the
    one interpolation rule.

    Area averaging when either side shrinks (no aliasing), bilinear when both grow; a
    non-square image is stretched to a square (the aspect ratio is not kept). Every model
    input of the project is resized here, before its pixels become floats.
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    if image.shape[:2] == (height, width):
        return image
    shrink = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def to_model_input(
    image: np.ndarray,
    image_size: int | None = 48,
    channels: int = 1,
    *,
    order: str = "rgb",
    scale: float | None = None,
    source: str = "image",
) -> np.ndarray:
    """One image as a model sees it: float32 ``(S, S, channels)`` in ``[0, 1]``.

    The second half of the one loader (:func:`load_image` is the first), used for image
    files (:func:`read_image`), arrays (:func:`fit_images`) and face crops
    (``senet.predict.crop_inputs``), so a model gets the same pixels in training,
    evaluation, prediction and explanation. In this order: alpha dropped; colour converted
    (gray from colour with OpenCV's luma weights, RGB order out); resized by
    :func:`resize_image` in the pixels' own type (uint8 stays uint8); then divided by
    ``scale`` into float32.

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, values as
            :func:`pixel_scale` accepts.
        image_size: Output side ``S``; ``None`` keeps the size.
        channels: 1 (gray) or 3 (RGB).
        order: ``"bgr"`` (OpenCV's order: decoded files, video frames) or ``"rgb"``.
        scale: The value of full brightness in ``image``; default ``pixel_scale(image)``
            (pass the whole frame's for a crop, so that crops scale alike).
        source: Name used in error messages (a file name).

    Returns:
        float32 array ``(S, S, channels)``.

    Example:
        >>> bgr = np.zeros((4, 6, 3), np.uint8); bgr[..., 2] = 255  # red in OpenCV's order
        >>> to_model_input(bgr, 2, 3, order="bgr")[0, 0].tolist()
        [1.0, 0.0, 0.0]
    """
    _check_size_channels(image_size, channels)
    order = check_choice("order", order, ("rgb", "bgr"))
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))):
        raise DataError(
            f"{source}: expected an image of shape (H, W) or (H, W, C) with C in 1, 3, 4; "
            f"got {image.shape}"
        )
    if scale is None:
        scale = pixel_scale(image, source=source)
    pixels, scale = _opencv_pixels(image, scale)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[..., :3])  # alpha dropped
        if channels == 1:
            gray = cv2.COLOR_BGR2GRAY if order == "bgr" else cv2.COLOR_RGB2GRAY
            pixels = cv2.cvtColor(pixels, gray)
        elif order == "bgr":
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif channels == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if image_size is not None:
        pixels = resize_image(pixels, image_size)
    out = pixels.astype(np.float32) / np.float32(scale)
    if out.ndim == 2:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0, out=out)


def to_bgr8(image: np.ndarray, *, scale: float | None = None) -> np.ndarray:
    """An 8-bit BGR ``(H, W, 3)`` version of a decoded image, for detection and drawing.

    uint8 BGR comes back as it is (not copied); gray and BGRA are converted; other types
    are scaled by ``scale`` (default :func:`pixel_scale`) to 0..255, rounded and saturated.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        pixels, scale = _opencv_pixels(image, pixel_scale(image) if scale is None else scale)
        image = cv2.convertScaleAbs(pixels, alpha=255.0 / scale)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[-1] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def fit_images(
    images: np.ndarray, image_size: int | None = 48, channels: int = 1, *, source: str = "array"
) -> np.ndarray:
    """Bring a batch of images to ``(N, S, S, channels)`` float32 in ``[0, 1]``.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` with ``C`` in 1, 3 (RGB) or 4 (RGBA,
            alpha dropped); values as :func:`to_unit_range` accepts.
        image_size: Output side ``S``; non-square images are resized to a square without
            keeping the aspect ratio. ``None`` keeps the size.
        channels: 1 (gray) or 3 (RGB).
        source: Name used in error messages (a file name).

    Returns:
        float32 array ``(N, S, S, channels)``.
    """
    _check_size_channels(image_size, channels)
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"{source}: expected images of shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
            f"got {images.shape}"
        )
    # one brightness scale for the batch; each image becomes float only after its resize
    scale = pixel_scale(images, source=source)
    if images.shape[0] == 0:
        side = images.shape[1] if image_size is None else image_size
        return np.zeros((0, side, side, channels), np.float32)
    side = (images.shape[1], images.shape[2]) if image_size is None else (image_size,) * 2
    check_inputs_fit(source, images.shape[0], *side, channels)
    first = to_model_input(images[0], image_size, channels, scale=scale, source=source)
    out = np.empty((images.shape[0], *first.shape), np.float32)
    out[0] = first
    for index in range(1, images.shape[0]):
        out[index] = to_model_input(images[index], image_size, channels, scale=scale, source=source)
    return out


def _header_pixels(raw: bytes) -> tuple[str, int] | None:
    """``(size text, pixel count)`` from an image file's header (Pillow, nothing decoded).

    None when Pillow cannot parse the format (OpenCV may still decode it).
    """
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            # senet's cap decides, not Pillow's warning at its own limit
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(raw)) as image:
                width, height = image.size
        return f"{width}x{height}", width * height
    except PILImage.DecompressionBombError:
        # Pillow refuses to open images above twice its own limit, so the exact size is
        # unknown here, only that it is larger
        limit = 2 * int(PILImage.MAX_IMAGE_PIXELS)
        return f"more than {limit}", limit + 1
    except Exception:  # noqa: BLE001 - any format Pillow cannot parse: OpenCV decides
        return None


def _too_many_pixels(path, size: str, cap: int) -> DataError:
    return DataError(
        f"{path}: image of {size} pixels is over the cap of {cap} pixels (a decompression "
        f"bomb?); set {MAX_IMAGE_PIXELS_ENV} to a larger number to read it"
    )


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file as OpenCV gives it: gray ``(H, W)`` or BGR ``(H, W, 3)``.

    The first half of the one loader (:func:`to_model_input` is the second; ``senet
    predict`` and ``senet explain`` call this one directly, to find faces in the photo).
    The width and height in the file's header are checked against the pixel cap before
    anything is decoded; then OpenCV decodes it with EXIF orientation applied, alpha
    dropped and the bit depth kept (uint8, uint16 or float32). Paths with any characters
    work.

    Args:
        path: Image file (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM ...).
        max_pixels: The most pixels (width x height) to decode. Default: the environment
            variable ``SENET_MAX_IMAGE_PIXELS`` if set, else ``DEFAULT_MAX_IMAGE_PIXELS``
            (100 million). A PNG of a few KB can claim 20000 x 20000 pixels (400 MB as
            8-bit gray); such a file is refused from its header. A file over
            ``SENET_MAX_IMAGE_BYTES`` (512 MiB) is refused from its size, before it is read. A format Pillow cannot
            parse is decoded under OpenCV's own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``,
            2**30 by default) and then checked.

    Returns:
        The decoded pixels, OpenCV's channel order.

    Raises:
        DataError: The file is missing, unreadable, not a decodable image, or has more
            pixels than the cap (the message names the file and the variable to set).
    """
    cap = pixel_cap(max_pixels)
    byte_cap = env_cap(None, "max_bytes", MAX_IMAGE_BYTES_ENV, DEFAULT_MAX_IMAGE_BYTES)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > byte_cap:
                raise DataError(
                    f"{path}: image file of {size} bytes is over the cap of {byte_cap} bytes; "
                    f"set {MAX_IMAGE_BYTES_ENV} to a larger number to read it"
                )
            # one byte more than the size said: a file that grows meanwhile is caught
            raw = file.read(size + 1)
    except OSError as error:
        raise DataError(f"{path}: cannot read image file ({error.strerror or error})") from None
    if len(raw) > byte_cap:  # the file grew while it was read
        raise DataError(f"{path}: image file is over the cap of {byte_cap} bytes")
    return decode_image(raw, path, max_pixels=cap)


def decode_image(
    raw: bytes, source: str | os.PathLike, *, max_pixels: int | None = None
) -> np.ndarray:
    """Decode an image file's bytes as :func:`load_image` does (the second half of it).

    The pixel cap is checked on the header before anything is decoded, then again on the
    decoded image (formats Pillow cannot parse). ``source`` names the bytes in errors (a
    path, or an upload's name).

    Raises:
        DataError: Not a decodable image, or more pixels than the cap (one line naming
            ``source``).
    """
    cap = pixel_cap(max_pixels)
    path = source
    header = _header_pixels(raw) if raw else None
    if header is not None and header[1] > cap:
        raise _too_many_pixels(path, header[0], cap)
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), _IMREAD_FLAGS) if raw else None
    except cv2.error as error:
        message = " ".join(str(error).split())[-200:]
        raise DataError(f"{path}: not a readable image (OpenCV: {message})") from None
    if image is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.shape[0] * image.shape[1] > cap:
        raise _too_many_pixels(path, f"{image.shape[1]}x{image.shape[0]}", cap)
    return image


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` (OpenCV's channel order) to ``path``, the format from its suffix,
    through a temporary file that is checked and then renamed: a full disk or a failed
    encode is an ``OSError`` naming ``path``, never a truncated file there."""
    from senet._files import atomic_write

    def write(temporary: Path) -> None:
        if not cv2.imwrite(str(temporary), image):
            raise OSError(f"cannot write {path}")

    atomic_write(path, write)


def read_image(
    path: str | os.PathLike,
    image_size: int | None = 48,
    channels: int = 1,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read an image file into a float32 ``(S, S, channels)`` array in ``[0, 1]``.

    The one image loader of the project: :func:`load_image` (header checked against the
    pixel cap, then OpenCV decodes 8 or 16 bit, gray or colour, EXIF orientation applied,
    alpha dropped; paths with any characters) and :func:`to_model_input` (colour comes out
    as RGB, gray from colour uses OpenCV's luma weights, the image is resized to
    ``image_size`` square in its own bit depth, area interpolation when shrinking,
    bilinear when enlarging, and only then scaled to ``[0, 1]``).

    Args:
        path: Image file (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM ...).
        image_size: Output side ``S``; ``None`` keeps the file's size.
        channels: 1 (gray) or 3 (RGB).
        max_pixels: The pixel cap; see :func:`load_image` (``SENET_MAX_IMAGE_PIXELS``).

    Returns:
        float32 array ``(S, S, channels)`` with values in ``[0, 1]``.

    Raises:
        DataError: The file is missing, unreadable, not a decodable image, or over the
            pixel cap.

    Example:
        >>> import cv2, numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "face.png")
        >>> _ = cv2.imwrite(path, np.full((64, 80), 255, np.uint8))
        >>> read_image(path, 48, 1).shape, float(read_image(path, 48, 1).max())
        ((48, 48, 1), 1.0)
    """
    _check_size_channels(image_size, channels)
    # read_bytes + imdecode instead of imread: imread silently fails on non-ASCII paths on
    # some platforms and returns None for every kind of failure.
    image = load_image(path, max_pixels=max_pixels)
    return to_model_input(image, image_size, channels, order="bgr", source=str(path))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension, hidden files left out), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` (hidden ones left out), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(
    root: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a folder with one sub-folder of images per class.

    Args:
        root: Folder whose sub-folders name the classes.
        image_size: Output side; see :func:`read_image`.
        channels: 1 or 3.
        skip_bad: Skip unreadable images and empty class folders with one warning
            that counts them, instead of raising.
        class_names: Use these names (and their order) for the labels, e.g. a training
            split's classes when reading its test split; a sub-folder that is not one of
            them is bad data. By default the sub-folder names, sorted.

    Returns:
        ``(x, y, class_names)``: float32 ``(N, S, S, channels)``, int64 ``(N,)`` and
        the class names the labels index.

    Raises:
        DataError: ``root`` has no class folders, a class folder is empty or unknown, an
            image cannot be read, or nothing is left after skipping.
    """
    root = Path(root)
    folders = class_folders(root)
    if not folders:
        raise DataError(f"{root}: no class sub-folders found")
    problems: list[str] = []
    files: list[tuple[Path, str]] = []
    for folder in folders:
        if class_names is not None and folder.name not in class_names:
            problems.append(
                f"{folder}: class folder {folder.name!r} is not one of {tuple(class_names)}"
            )
            continue
        images = list_images(folder)
        if not images:
            problems.append(f"{folder}: empty class folder (no image files)")
        files.extend((path, folder.name) for path in images)
    if class_names is None:
        # Classes are the folders that hold images; an empty one is reported above.
        class_names = tuple(sorted({name for _, name in files}))
    class_names = tuple(class_names)
    index = {name: i for i, name in enumerate(class_names)}
    if image_size is not None:  # all of them, before the first is decoded
        check_inputs_fit(root, len(files), image_size, image_size, channels)
    cap = array_cap()
    x, y, held = [], [], 0
    for path, name in files:
        if problems and not skip_bad:
            break
        try:
            x.append(read_image(path, image_size, channels))
        except DataError as error:
            problems.append(str(error))
            continue
        y.append(index[name])
        if image_size is None:  # each file keeps its size: the total so far
            held += x[-1].nbytes
            if held > cap:
                raise DataError(
                    f"{root}: the first {len(x)} images need {held} bytes as float32 model "
                    f"inputs, over the cap of {cap} bytes; set {MAX_ARRAY_BYTES_ENV} to a "
                    "larger number to allow it, or give an image size"
                )
    report_problems(problems, skip_bad, what=f"{root}: skipped {{count}} bad item(s)")
    if not x:
        raise DataError(f"{root}: no readable images")
    return np.stack(x), np.asarray(y, np.int64), class_names


def read_npz(
    path: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    skip_bad: bool = False,
    max_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read an ``.npz`` with arrays ``x`` (images) and ``y`` (integer labels).

    ``x`` is ``(N, H, W)`` or ``(N, H, W, C)`` (C in 1, 3 RGB, 4 RGBA) with values as
    :func:`to_unit_range` accepts; ``y`` holds integers (an integer dtype, or floats
    with whole values). An optional ``class_names`` array of strings fixes the number
    of classes; without it classes are named ``"0"``, ``"1"``, ... up to ``max(y)``.
    Other arrays in the file are not loaded; pickled objects never are.

    Args:
        path: The ``.npz`` file.
        image_size: Output side; see :func:`read_image`.
        channels: 1 or 3.
        skip_bad: Skip bad samples with one warning that counts them, instead of raising.
        max_bytes: The most memory the file may need: ``x``, ``y`` and ``class_names`` as
            their ``.npy`` headers declare them, plus the float32 model inputs made from
            ``x``. Checked from the headers before anything is loaded (a compressed
            ``.npz`` of 255 KB can hold 2.6 GB of zeros). Default: the environment variable
            ``SENET_MAX_ARRAY_BYTES`` if set, else ``DEFAULT_MAX_ARRAY_BYTES`` (2 GiB).

    Returns:
        ``(x, y, class_names)`` as :func:`read_class_folders`.

    Raises:
        DataError: Not an ``.npz`` (zip) archive, arrays over the byte cap (the message
            names the file and the variable to set), missing arrays, mismatched lengths,
            non-integer labels, a label that is negative or not below the number of
            classes (each named by its 0-based index), images with NaN/inf, or nothing
            left after skipping.
    """
    path = Path(path)
    _check_size_channels(image_size, channels)
    arrays = load_npz_arrays(path, image_size, channels, max_bytes=max_bytes, labels="labels")
    x, y = arrays["x"], np.asarray(arrays["y"])
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"{path}: 'x' and 'y' must have the same length N and 'y' must be 1-D; "
            f"got x {x.shape}, y {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (np.round(y) == y)
    elif np.issubdtype(y.dtype, np.integer):
        whole = np.ones(y.shape, bool)
    else:
        raise DataError(f"{path}: 'y' must hold integer labels, got dtype {y.dtype}")
    labels = np.where(whole, y, -1).astype(np.int64)
    if "class_names" in arrays:
        names = tuple(str(name) for name in np.asarray(arrays["class_names"]).reshape(-1))
    else:
        names = infer_class_names(labels, source=str(path), skip_bad=skip_bad)
    problems = []
    keep = np.ones(y.shape, bool)
    for i in np.flatnonzero(~whole):
        problems.append(f"{path}, index {i}: label {y[i].item()!r} is not an integer")
        keep[i] = False
    for i in np.flatnonzero(whole & ((labels < 0) | (labels >= len(names)))):
        problems.append(f"{path}, index {i}: label {labels[i]} out of range [0, {len(names)})")
        keep[i] = False
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        for i in np.flatnonzero(~finite):
            problems.append(f"{path}, index {i}: image has NaN or inf pixels")
            keep[i] = False
    report_problems(
        sorted(problems, key=_index_of), skip_bad, what=f"{path}: skipped {{count}} bad item(s)"
    )
    if not keep.any():
        raise DataError(f"{path}: no valid samples")
    kept = x if keep.all() else x[keep]
    return fit_images(kept, image_size, channels, source=str(path)), labels[keep], names


def load_npz_arrays(
    path: Path,
    image_size: int | None,
    channels: int,
    *,
    max_bytes: int | None = None,
    labels: str = "labels",
) -> dict[str, np.ndarray]:
    """``x``, ``y`` and (if there) ``class_names`` of an ``.npz``, after the byte cap is
    checked from the arrays' headers (nothing is decompressed before); the one ``.npz``
    loader of the readers. ``labels`` says what ``y`` holds in the missing-array message.

    Raises:
        DataError: Not an ``.npz`` (zip) archive, over the cap, ``x`` or ``y`` missing.
    """
    cap = array_cap(max_bytes)
    try:
        names_in_file, shapes = _npz_headers(path)
        needed = _npz_bytes_needed(shapes, image_size, channels)
        if needed > cap:
            raise DataError(
                f"{path}: its arrays would need {needed} bytes of memory, over the cap of "
                f"{cap} bytes (a decompression bomb?); set {MAX_ARRAY_BYTES_ENV} to a larger "
                "number to read it"
            )
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in _NPZ_ARRAYS if key in shapes}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: cannot read .npz file ({error})") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing array(s) {missing}; expected 'x' (images) and 'y' ({labels}), "
            f"found {sorted(names_in_file)}"
        )
    return arrays


def _npz_headers(path: Path) -> tuple[list[str], dict[str, tuple[tuple[int, ...], np.dtype]]]:
    """The array names in an ``.npz`` and, for those :func:`read_npz` loads, the shape and
    dtype their ``.npy`` headers declare; nothing else is read or decompressed."""
    formats = np.lib.format
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        members = {
            (name[:-4] if name.endswith(".npy") else name): name for name in archive.namelist()
        }
        for key in _NPZ_ARRAYS:
            if key not in members:
                continue
            with archive.open(members[key]) as member:
                # a member that is not an .npy array is refused here (np.load would hand
                # back its raw bytes, all of them)
                version = formats.read_magic(member)
                # version 3.0 differs from 2.0 only in how field names are encoded
                read_header = (
                    formats.read_array_header_1_0
                    if version == (1, 0)
                    else formats.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
            shapes[key] = (tuple(int(n) for n in shape), np.dtype(dtype))
    return list(members), shapes


def _npz_bytes_needed(shapes: dict, image_size: int | None, channels: int) -> int:
    """Bytes of the arrays as declared, plus the float32 model inputs made from ``x``."""
    needed = sum(math.prod(shape) * dtype.itemsize for shape, dtype in shapes.values())
    if "x" in shapes and len(shapes["x"][0]) >= 3:
        shape = shapes["x"][0]
        side = image_size * image_size if image_size is not None else math.prod(shape[1:3])
        needed += shape[0] * side * channels * 4
    return needed


def _index_of(problem: str) -> int:
    return int(problem.split(", index ", 1)[1].split(":", 1)[0])
