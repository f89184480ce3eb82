"""Decompression bombs: image files and .npz archives that claim far more memory than they
take on disk are refused from their headers, before anything is decoded or loaded.

The hostile files are built here, in tmp_path, without ever holding their claimed size in
memory: a PNG's IDAT is compressed row block by row block, an .npz member is streamed.
``tracemalloc`` sees NumPy's (and OpenCV's NumPy-backed) allocations, so the peaks below
show that nothing near the claimed size was allocated.
"""

import struct
import tracemalloc
import zipfile
import zlib

import cv2
import numpy as np
import pytest

from senet.data import DataError, load_dataset, read_image
from senet.data.images import (
    DEFAULT_MAX_ARRAY_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_ARRAY_BYTES_ENV,
    MAX_IMAGE_PIXELS_ENV,
    load_image,
    read_npz,
)

MB = 1 << 20


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _black_png(path, width: int, height: int) -> None:
    """A valid 1-bit gray PNG of ``width`` x ``height`` black pixels, a few KB on disk."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    idat = [compressor.compress(row * rows_per_block) for _ in range(height // rows_per_block)]
    idat.append(compressor.compress(row * (height % rows_per_block)))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, gray
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(idat))
        + _png_chunk(b"IEND", b"")
    )


def _zeros_npz(path, shape, dtype=np.float64, *, data_bytes=None, labels=True) -> None:
    """An .npz whose ``x`` declares ``shape`` zeros, deflated as it is streamed in.

    ``data_bytes`` writes only that many bytes of zeros after the header (a cut-off
    member: the header alone claims the size).
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype))}
    header.update(fortran_order=False, shape=tuple(shape))
    total = int(np.prod(shape)) * np.dtype(dtype).itemsize
    remaining = total if data_bytes is None else data_bytes
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            block = bytes(4 * MB)
            while remaining > 0:
                member.write(block[: min(remaining, len(block))])
                remaining -= len(block)
        if labels:
            with archive.open("y.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(shape[0], np.int64))


def _peak_during(call):
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as caught:
            call()
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------- images


def test_png_claiming_400_megapixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    _black_png(path, 20000, 20000)
    assert path.stat().st_size < 100_000  # 400 MB of pixels as 8-bit gray, 1.6 GB as float32
    error, peak = _peak_during(lambda: read_image(path, 48, 1))
    message = str(error)
    assert len(message.splitlines()) == 1
    assert str(path) in message and MAX_IMAGE_PIXELS_ENV in message
    assert f"cap of {DEFAULT_MAX_IMAGE_PIXELS} pixels" in message
    assert peak < 20 * MB
    # predict and explain decode photos with load_image: the same refusal
    with pytest.raises(DataError, match=MAX_IMAGE_PIXELS_ENV):
        load_image(path)


def test_pixel_cap_follows_the_environment_and_the_argument(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    _black_png(path, 3000, 2000)  # 6 megapixels, under the default cap
    assert read_image(path, 8, 1).shape == (8, 8, 1)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "5_000_000")
    error, peak = _peak_during(lambda: read_image(path, 8, 1))
    assert f"{path}: image of 3000x2000 pixels is over the cap of 5000000 pixels" in str(error)
    assert peak < 2 * MB  # decoded, it would be 6 MB
    # the folder reader (training, evaluation) goes through the same loader
    folder = tmp_path / "data" / "happy"
    folder.mkdir(parents=True)
    _black_png(folder / "a.png", 3000, 2000)
    with pytest.raises(
        DataError, match=f"a.png: image of 3000x2000 pixels.*{MAX_IMAGE_PIXELS_ENV}"
    ):
        load_dataset(tmp_path / "data")
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "6000000")
    assert float(read_image(path, 8, 1).max()) == 0.0
    with pytest.raises(DataError, match="over the cap of 10 pixels"):
        read_image(path, 8, 1, max_pixels=10)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=f"`{MAX_IMAGE_PIXELS_ENV}` must be a positive integer"):
        read_image(path, 8, 1)


def test_formats_pillow_cannot_parse_are_checked_after_decoding(tmp_path, monkeypatch):
    # OpenCV reads Radiance HDR files, Pillow does not (the header check cannot see them)
    path = tmp_path / "image.hdr"
    if not cv2.imwrite(str(path), np.full((30, 40, 3), 0.5, np.float32)):
        pytest.skip("this OpenCV build writes no Radiance HDR files")
    assert read_image(path, None, 1).shape == (30, 40, 1)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1000")
    with pytest.raises(DataError, match="image.hdr: image of 40x30 pixels is over the cap"):
        read_image(path, None, 1)


# ------------------------------------------------------------------------------- npz


def test_npz_of_zeros_over_the_default_cap_is_refused_from_its_header(tmp_path):
    # x claims 2.6 GB of float64; only 1 MB of it is written (the header is what counts)
    path = tmp_path / "bomb.npz"
    _zeros_npz(path, (35_000, 96, 96, 1), data_bytes=MB)
    assert path.stat().st_size < 100_000
    error, peak = _peak_during(lambda: read_npz(path))
    message = str(error)
    assert len(message.splitlines()) == 1
    assert str(path) in message and MAX_ARRAY_BYTES_ENV in message
    assert f"cap of {DEFAULT_MAX_ARRAY_BYTES} bytes" in message
    assert peak < 20 * MB
    with pytest.raises(DataError, match=MAX_ARRAY_BYTES_ENV):
        load_dataset(path)


def test_npz_byte_cap_follows_the_environment_and_counts_the_model_inputs(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    _zeros_npz(path, (400, 100, 100))  # 32 MB of float64 zeros, deflated to a few KB
    assert path.stat().st_size < 200_000
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, str(4 * MB))
    error, peak = _peak_during(lambda: read_npz(path, image_size=8))
    # x 32,000,000 + y 3,200 + inputs 400 * 8 * 8 * 4 = 102,400
    assert f"{path}: its arrays would need 32105600 bytes of memory" in str(error)
    assert peak < 2 * MB
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, "32105600")
    x, y, _ = read_npz(path, image_size=8)
    assert x.shape == (400, 8, 8, 1) and not x.any() and y.tolist() == [0] * 400
    # tiny images blown up to the model's side count too: x 2 MB + y 4 MB + inputs 32 MB
    small = tmp_path / "small.npz"
    x, y = np.zeros((500_000, 2, 2), np.uint8), np.zeros(500_000, np.int64)
    np.savez_compressed(small, x=x, y=y)
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, str(16 * MB))
    with pytest.raises(DataError, match="would need 38000000 bytes"):
        read_npz(small, image_size=4)
    with pytest.raises(DataError, match="over the cap of 100 bytes"):
        read_npz(small, image_size=4, max_bytes=100)


def test_npz_members_that_are_not_arrays_and_npy_files_are_refused(tmp_path):
    raw = tmp_path / "raw.npz"
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x", bytes(10 * MB))  # np.load would hand back all of its bytes
        archive.writestr("y.npy", b"")
    with pytest.raises(DataError, match="raw.npz: cannot read .npz file"):
        read_npz(raw)
    npy = tmp_path / "plain.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros((4, 8, 8)))
    with pytest.raises(DataError, match="plain.npz: cannot read .npz file"):
        read_npz(npy)
