"""``senet predict`` for segmentation models: a label map for every image or volume.

An image (any format :func:`senet.data.images.load_image` reads) goes to the model as the
training images did (:func:`senet.data.images.to_model_input`: resized to the model's
input side); the predicted labels are resized back to the image's own size with the
nearest label and written as ``STEM_mask.png``, a palette PNG whose pixel values are the
class indices (so it reads back as a mask senet trains on) and whose colours show the
classes, with ``STEM_overlay.png``, the photo with the classes tinted over it.

A NIfTI volume (``.nii``, ``.nii.gz``, the ``senet[medical]`` extra) is read in RAS+
orientation and normalised like the training volumes (z-scored, or clipped to the CT
window the model records; :mod:`senet.data.nifti`), labelled by
sliding-window inference (:func:`senet.segmentation.sliding_window_inference`: windows
the size of the model's input, 25% overlap, Gaussian weights, so memory is bounded by the
window and the output, never by a batch of the whole volume) and written as
``STEM_mask.nii.gz`` in the input's own orientation with the input's affine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from senet.checks import check_number
from senet.data.images import load_image, to_bgr8, to_model_input, write_image
from senet.data.masks import resize_labels
from senet.inference import class_names_for, load_classifier, model_record, predictor
from senet.segmentation.colours import colour_labels

__all__ = [
    "NIFTI_SUFFIXES",
    "Segmentation",
    "explain_segmentation",
    "class_table",
    "iter_segmentations",
    "mask_png",
    "overlay_labels",
    "segment_image",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Segmentation:
    """What ``senet predict`` says of one image or volume.

    Attributes:
        path: The input file.
        shape: The label map's shape (the input's own size).
        classes: Per class name: ``{"pixels": count, "fraction": of the map}``.
        mask: The mask file written.
        overlay: The overlay image written (images only), else None.
    """

    path: str
    shape: tuple[int, ...]
    classes: dict[str, dict[str, float]]
    mask: str
    overlay: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "shape": list(self.shape),
            "classes": self.classes,
            "mask": self.mask,
            "overlay": self.overlay,
        }


def overlay_labels(image_bgr: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image_bgr`` (8-bit, gray or BGR) with every non-background class tinted over it."""
    base = to_bgr8(image_bgr)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    colours = colour_labels(labels)[..., ::-1].astype(np.float32)  # RGB -> BGR
    tinted = base.astype(np.float32)
    foreground = labels > 0
    tinted[foreground] = (1 - alpha) * tinted[foreground] + alpha * colours[foreground]
    return np.clip(tinted + 0.5, 0, 255).astype(np.uint8)


def mask_png(labels: np.ndarray, source: str = "mask") -> bytes:
    """``labels`` (values below 256) as palette PNG bytes: pixel values are the classes,
    the palette shows them (:func:`senet.segmentation.colours.colour_labels`)."""
    import io

    from PIL import Image

    if labels.max(initial=0) > 255:
        raise ValueError(f"{source}: a PNG mask holds at most 256 classes")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[:] = colour_labels(np.arange(256))
    image.putpalette(palette.ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_palette_png(path: Path, labels: np.ndarray) -> None:
    """``labels`` as a palette PNG file (:func:`mask_png`), written atomically."""
    from senet._files import atomic_write

    data = mask_png(labels, str(path))
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *(path.suffixes[-1:] or [""])):
        if suffix and name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


_MASK_FILES = {"image": ("_mask.png", "_overlay.png"), "volume": ("_mask.nii.gz",)}


def _targets(
    paths: Sequence[Path], out_dir: Path, overwrite: bool, suffixes: dict = _MASK_FILES
) -> list[tuple[Path, ...]]:
    """The files each input gives, checked before anything runs: ``STEM`` + each of
    ``suffixes["image"]`` for an image (``STEM_mask.png`` and ``STEM_overlay.png``), of
    ``suffixes["volume"]`` for a volume (``STEM_mask.nii.gz``); a second input of the same
    stem gets ``STEM_2_...``."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        stem = _stem(path)
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}_{seen[stem]}"
        kind = "volume" if _is_volume(path) else "image"
        files = tuple(out_dir / f"{stem}{suffix}" for suffix in suffixes[kind])
        for file in files:
            if file.exists() and not overwrite:
                raise FileExistsError(
                    f"{file} already exists; pass --overwrite to replace it, or choose "
                    "another folder"
                )
        out.append(files)
    return out


def _is_volume(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def segment_image(
    predict, image: np.ndarray, shape: Sequence[int], *, source: str = "image"
) -> np.ndarray:
    """The label map of one decoded image, at the image's own size.

    Args:
        predict: The model's batch function (:func:`senet.inference.predictor`).
        image: As :func:`senet.data.images.load_image` gives it (grey or BGR).
        shape: The model's input shape without the batch, ``(side, side, channels)``.
        source: Names the image in errors.

    Returns:
        ``(H, W)`` uint8 class indices: the model's labels at its input size, resized to
        the image's with the nearest label.
    """
    x = to_model_input(image, shape[0], shape[-1], order="bgr", source=source)
    probabilities = np.asarray(predict(x[None].astype(np.float32)))[0]
    return resize_labels(np.argmax(probabilities, -1).astype(np.uint8), image.shape[:2])


def class_table(labels: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class name: ``{"pixels": count, "fraction": of the map}``."""
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=len(names))
    return {
        str(name): {"pixels": int(counts[k]), "fraction": float(counts[k] / labels.size)}
        for k, name in enumerate(names)
    }


def iter_segmentations(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    overlap: float = 0.25,
    batch_size: int = 4,
    allow_h5: bool = False,
    allow_savedmodel: bool = False,
    model: Any = None,
) -> Iterator[Segmentation]:
    """Label every image and volume of ``paths`` with a segmentation model, one at a time.

    Args:
        model_path: A segmentation model: ``.keras`` (``senet train --task
            segmentation``), or exported (``.tflite``, ``.onnx``, a SavedModel directory).
        paths: Image files and NIfTI volumes.
        out_dir: Where the masks (and overlays) go; created if missing.
        overwrite: Replace mask files that exist (default: refuse before anything runs).
        overlap: Overlap of neighbouring windows on volumes, in ``[0, 1)``.
        batch_size: Windows the model labels at once.
        allow_h5: Accept a legacy ``.h5`` model (trusted files only).
        allow_savedmodel: Accept a SavedModel directory (trusted ones only).
        model: The model at ``model_path``, when already loaded
            (:func:`senet.inference.open_model`); else it is loaded here.

    Yields:
        A :class:`Segmentation` per input, after its files are written.
    """
    from senet._files import check_input_file

    overlap = check_number("overlap", overlap, minimum=0, maximum=0.95)
    if not Path(model_path).exists():
        raise FileNotFoundError(f"no such file: {model_path}")
    paths = [check_input_file(path, wanted="an image or NIfTI volume") for path in paths]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; the masks go into a folder")
    targets = _targets(paths, out_dir, overwrite)
    if model is None:
        model = load_classifier(model_path, allow_h5=allow_h5, allow_savedmodel=allow_savedmodel)
    shape = tuple(model.input_shape[1:])
    record = model_record(model, model_path) or {}
    names = class_names_for(model_path, int(model.output_shape[-1]), record)
    if len(shape) == 4 and shape[0] is None:
        # a network trained on patches takes any size: windows of its patch
        side = record.get("patch_size") or record.get("image_size")
        if not isinstance(side, int):
            raise ValueError(f"{model_path} takes any size and records no patch size")
        shape = (side, side, side, shape[-1])
    predict = predictor(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, files in zip(paths, targets, strict=True):
        if _is_volume(path):
            if len(shape) != 4:
                raise ValueError(f"{path}: a volume needs a 3-D model; {model_path} takes {shape}")
            labels = _segment_volume(
                path, files[0], shape, predict, overlap, batch_size, record.get("ct_window")
            )
            yield Segmentation(str(path), labels.shape, class_table(labels, names), str(files[0]))
            continue
        if len(shape) != 3:
            raise ValueError(f"{path}: an image needs a 2-D model; {model_path} takes {shape}")
        image = load_image(path)
        labels = segment_image(predict, image, shape, source=str(path))
        _write_palette_png(files[0], labels)
        write_image(files[1], overlay_labels(image, labels))
        yield Segmentation(
            str(path), labels.shape, class_table(labels, names), str(files[0]), str(files[1])
        )


def explain_segmentation(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    allow_h5: bool = False,
    model: Any = None,
) -> list[str]:
    """``senet explain`` for a 2-D segmentation model: ``STEM_gates.png`` per image, the
    image, its predicted mask and every attention layer's gates
    (:func:`senet.explain.gates.plot_gates`: sSE's spatial gate and cSE's channel gate per
    decoder level). ``model``: the model at ``model_path`` when already loaded. Returns
    the files written."""
    from senet._files import check_input_file
    from senet.explain.gates import attention_gates, plot_gates

    if not Path(model_path).exists():
        raise FileNotFoundError(f"no such file: {model_path}")
    paths = [check_input_file(path, wanted="an image") for path in paths]
    out_dir = Path(out_dir)
    for path in paths:
        if _is_volume(path):
            raise ValueError(f"{path}: explain draws the gates of 2-D images, not volumes")
    gates = {"image": ("_gates.png",), "volume": ()}
    targets = [files[0] for files in _targets(paths, out_dir, overwrite, gates)]
    if model is None:
        model = load_classifier(model_path, allow_h5=allow_h5)
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3:
        raise ValueError(f"{model_path} takes {shape}: explain draws 2-D segmentation models")
    names = class_names_for(
        model_path, int(model.output_shape[-1]), model_record(model, model_path)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, target in zip(paths, targets, strict=True):
        image = load_image(path)
        x = to_model_input(image, shape[0], shape[-1], order="bgr", source=str(path))[None]
        predicted = np.argmax(np.asarray(predictor(model)(x.astype(np.float32))), axis=-1)
        gates = attention_gates(model, x)
        if not gates:
            raise ValueError(f"{model_path} has no attention layer: no gates to draw")
        plot_gates(
            x, None, predicted, gates, target, class_names=names, title=f"{path.name}: gates"
        )
    return [str(target) for target in targets]


def _segment_volume(
    path: Path, target: Path, shape, predict, overlap, batch_size, window=None
) -> np.ndarray:
    """Label one NIfTI volume and write its mask in the input's own orientation."""
    from senet.data.nifti import normalize_intensity, read_volume, write_volume
    from senet.segmentation import sliding_window_inference

    volume = read_volume(path, kind="image")
    array = volume.array if volume.array.ndim == 3 else volume.array[..., 0]
    # the normalisation the model was trained with: its CT window, else the z-score
    image = normalize_intensity(array, window=window)[..., None].astype(np.float32)
    patch = tuple(int(s) for s in shape[:3])
    probabilities = sliding_window_inference(
        image, patch, predict, overlap=overlap, batch_size=batch_size
    )
    labels = np.argmax(probabilities, axis=-1).astype(np.uint8)
    write_volume(target, *_file_orientation(labels, volume.affine, path))
    return labels


def _file_orientation(labels: np.ndarray, canonical_affine: np.ndarray, path: Path):
    """``labels`` (RAS+, as :func:`senet.data.nifti.read_volume` reads) turned back to the
    orientation of the file at ``path``, with that file's affine."""
    import nibabel as nib
    from nibabel.orientations import io_orientation, ornt_transform

    original = nib.load(str(path))
    transform = ornt_transform(io_orientation(canonical_affine), io_orientation(original.affine))
    reoriented = nib.Nifti1Image(labels, canonical_affine).as_reoriented(transform)
    return np.asarray(reoriented.dataobj), original.affine
