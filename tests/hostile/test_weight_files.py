"""Corrupt weight files for `senet convert` (issue 20, item 4): a header that claims 2**40
bytes, a shape of 10**12 floats the file does not hold, a shape whose size overflows, and an
empty file. Each is one line naming the file and exit 2, never the reader's traceback."""

import json
import struct

import pytest

from senet.cli import main

pytest.importorskip("safetensors.numpy", reason="needs safetensors")


def _safetensors(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _header(shape, end):
    return json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, end]}}).encode()


CORRUPT = {
    "header-2-40": lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}"),
    "shape-1e6-1e6": lambda p: _safetensors(p, _header([10**6, 10**6], 4 * 10**12)),
    "shape-overflows": lambda p: _safetensors(p, _header([2**62, 2**62], 16), b"\0" * 16),
    "empty": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_convert_names_a_corrupt_safetensors_file_in_one_line(kind, tmp_path, capsys):
    weights = tmp_path / f"{kind}.safetensors"
    CORRUPT[kind](weights)
    out = tmp_path / "model.keras"
    status = main(["convert", str(weights), "--arch", "seresnet50", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "\n" not in err and "Traceback" not in err
    assert str(weights) in err and "not a readable .safetensors file" in err
    assert not out.exists()
