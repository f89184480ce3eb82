"""FER2013: the Kaggle csv (``emotion,pixels,Usage``) and the folder layout (``train/<class>``).

The csv holds one 48x48 grayscale face a row: ``emotion`` is the label (0 angry,
1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral), ``pixels`` the image as
space-separated integers 0-255 in row-major order, and ``Usage`` the split: ``Training``,
``PublicTest`` (used here as validation) or ``PrivateTest`` (test).

The folder layout (as FER2013 is also distributed) is ``train/<class>/*.png`` and
``test/<class>/...``, optionally ``val/`` (or ``validation/``, ``valid/``); class names
are the folder names, sorted.
"""

from __future__ import annotations

import codecs
import csv
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from senet.data.base import EMOTIONS, DataError, report_problems
from senet.data.images import (
    MAX_ARRAY_BYTES_ENV,
    array_cap,
    class_folders,
    read_class_folders,
)

__all__ = ["SPLIT_FOLDERS", "USAGE_SPLITS", "is_fer_folder", "read_fer2013_csv", "read_fer_folder"]

USAGE_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
FER_SIDE = 48


def read_fer2013_csv(
    path: str | os.PathLike, *, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a FER2013-style csv.

    Every row must have the header's number of fields, an integer ``emotion`` in
    ``[0, 7)``, integer pixels in ``[0, 255]`` whose count is a perfect square and the same
    for all rows (48 * 48 = 2304 for FER2013; the count most rows share, 2304 on a tie,
    is the expected one), and a known ``Usage`` when that column exists. Column names
    are matched case-insensitively; blank lines are ignored.

    Args:
        path: The csv file.
        skip_bad: Skip bad rows with one warning that counts them, instead of raising
            :class:`DataError` for the first one.

    Returns:
        ``(pixels, labels, splits)``: uint8 ``(N, side, side)``, int64 ``(N,)`` and a str
        array ``(N,)`` of ``"train"``, ``"val"``, ``"test"``, or ``""`` for every row
        when the file has no ``Usage`` column.

    Raises:
        DataError: Naming the file and the 1-based line of the first bad row, or a
            missing file, an empty file, a header without ``emotion`` or ``pixels``, or
            no valid rows.
    """
    path = Path(path)
    problems: list[tuple[int, str]] = []  # (line, reason)
    rows = _read_rows(path, skip_bad, problems)
    expected = _expected_count([pixels.size for _, _, pixels, _ in rows])
    side = math.isqrt(expected) if expected else FER_SIDE
    kept = []
    for line, label, pixels, split in rows:
        if pixels.size != expected:
            detail = "" if _is_square(pixels.size) else ", not a square image"
            problems.append(
                (line, f"{pixels.size} pixel values{detail}; expected {expected} ({side}x{side})")
            )
        else:
            kept.append((label, pixels, split))
    problems.sort()
    report_problems(
        [f"{path}, line {line}: {reason}" for line, reason in problems],
        skip_bad,
        what=f"{path}: skipped {{count}} bad row(s)",
    )
    if not kept:
        raise DataError(f"{path}: no valid rows")
    labels = np.array([label for label, _, _ in kept], np.int64)
    pixels = np.stack([p for _, p, _ in kept]).reshape(-1, side, side).astype(np.uint8)
    splits = np.array([split for _, _, split in kept], dtype=str)
    return pixels, labels, splits


def _read_rows(path: Path, skip_bad: bool, problems: list[tuple[int, str]]) -> list[tuple]:
    """The csv's good rows as ``(line, label, pixels, split)``; a bad one's ``(line,
    reason)`` goes to ``problems`` (and ends the reading unless ``skip_bad``). The pixels
    held are capped (:func:`array_cap`) as they are read."""
    rows = []
    cap, held = array_cap(), 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            columns = _columns(path, next(reader, None))
            while True:
                line = reader.line_num + 1  # where the next row starts
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as error:  # the reader goes on with the next line
                    parsed = _unreadable_row(error)
                else:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    parsed = _parse_row(row, *columns)
                if isinstance(parsed, str):
                    problems.append((line, parsed))
                    if not skip_bad:
                        break
                    continue
                rows.append((line, *parsed))
                held += parsed[1].nbytes
                if held > cap:
                    raise DataError(
                        f"{path}, line {line}: the rows so far hold {held} bytes of pixels, "
                        f"over the cap of {cap} bytes; set {MAX_ARRAY_BYTES_ENV} to a "
                        "larger number to allow it"
                    )
    except UnicodeDecodeError:
        raise DataError(
            f"{path}, line {_first_undecodable_line(path)}: not UTF-8 text; "
            "save the csv as UTF-8 (or ASCII)"
        ) from None
    except (OSError, csv.Error) as error:
        raise DataError(f"{path}: cannot read csv ({error})") from None
    return rows


def _columns(path: Path, header: list[str] | None) -> tuple[int, int, int, int | None]:
    """``(fields, emotion column, pixels column, usage column or None)`` of the header."""
    if header is None:
        raise DataError(f"{path}: empty file (expected a header emotion,pixels[,Usage])")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in ("emotion", "pixels") if name not in columns]
    if missing:
        raise DataError(
            f"{path}, line 1: missing column(s) {missing} in header {header}; "
            "expected emotion,pixels[,Usage]"
        )
    usage_at = columns.index("usage") if "usage" in columns else None
    return len(columns), columns.index("emotion"), columns.index("pixels"), usage_at


def _unreadable_row(error: csv.Error) -> str:
    """The reason for a row the csv module refused.

    The field limit (``csv.field_size_limit()``, 131072 characters by default) is kept: a
    48x48 FER2013 row is about 9,000 characters, so a field past it is not an image row
    and is reported rather than read into memory.
    """
    if "field limit" in str(error):
        return (
            f"a field longer than the csv field limit of {csv.field_size_limit()} characters "
            f"(a {FER_SIDE}x{FER_SIDE} row is about {FER_SIDE * FER_SIDE * 4} characters)"
        )
    return f"unreadable csv row ({error})"


def _first_undecodable_line(path: Path) -> int:
    """The 1-based line of the first bytes that are not UTF-8 (text decoding reads blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                return line + block.count(b"\n", 0, max(error.start, 0))
            line += block.count(b"\n")
    return line


def _parse_row(row, width, emotion_at, pixels_at, usage_at):
    """``(label, pixels, split)`` for a good row, else the reason (a str)."""
    if len(row) != width:
        return f"malformed row: {len(row)} fields, expected {width}"
    text = row[emotion_at].strip()
    try:
        label = int(text)
    except ValueError:
        return f"emotion {text!r} is not an integer"
    if not 0 <= label < len(EMOTIONS):
        return f"label {label} out of range [0, {len(EMOTIONS)})"
    tokens = row[pixels_at].split()
    if not tokens:
        return "empty pixels field"
    try:
        pixels = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not t.lstrip("+-").isdigit()), None)
        if bad is None:
            return "pixel values must lie in [0, 255]"
        return f"non-numeric pixel value {bad!r}"
    if pixels.min() < 0 or pixels.max() > 255:
        return "pixel values must lie in [0, 255]"
    split = ""
    if usage_at is not None:
        usage = row[usage_at].strip()
        split = USAGE_SPLITS.get(usage.lower())
        if split is None:
            return f"unknown Usage {usage!r}; expected Training, PublicTest or PrivateTest"
    return label, pixels.astype(np.uint8), split


def _is_square(count: int) -> bool:
    return count > 0 and math.isqrt(count) ** 2 == count


def _expected_count(counts: list[int]) -> int | None:
    """The square pixel count most rows share (FER2013's 2304 wins a tie)."""
    tally = Counter(c for c in counts if _is_square(c))
    if not tally:
        return None
    best = max(tally.values())
    if tally.get(FER_SIDE * FER_SIDE) == best:
        return FER_SIDE * FER_SIDE
    return next(c for c in counts if tally.get(c) == best)


def is_fer_folder(root: str | os.PathLike) -> bool:
    """Whether ``root`` has ``train/`` and ``test/`` folders that hold class sub-folders."""
    root = Path(root)
    return all(
        (root / name).is_dir() and bool(class_folders(root / name)) for name in ("train", "test")
    )


def read_fer_folder(
    root: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    skip_bad: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None]:
    """Read ``train/<class>/*``, ``test/<class>/*`` and, if present, ``val/<class>/*``.

    Class names are the sorted class folders of ``train/``; a class folder in
    ``test/`` or ``val/`` that ``train/`` lacks is bad data.

    Returns:
        ``{"train": (x, y, class_names), "val": ... or None, "test": ...}`` as
        :func:`senet.data.images.read_class_folders` returns them.
    """
    root = Path(root)
    out: dict[str, tuple | None] = {}
    train = read_class_folders(
        root / "train", image_size=image_size, channels=channels, skip_bad=skip_bad
    )
    out["train"] = train
    for split in ("val", "test"):
        folder = next((root / n for n in SPLIT_FOLDERS[split] if (root / n).is_dir()), None)
        out[split] = (
            None
            if folder is None
            else read_class_folders(
                folder,
                image_size=image_size,
                channels=channels,
                skip_bad=skip_bad,
                class_names=train[2],
            )
        )
    return out
