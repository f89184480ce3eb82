"""senet._files: the one atomic-write mechanism behind run directories and reports."""

import os

import pytest

from senet._files import TEMP_PREFIX, atomic_write, atomic_write_text


def test_atomic_write_text_replaces_the_content(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old", encoding="utf-8")
    atomic_write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")
    seen = []

    def half_then_fail(temporary):
        seen.append(temporary)
        temporary.write_bytes(b"half a")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old model"
    assert os.listdir(tmp_path) == ["model.keras"]
    # the temporary sits beside the target, carries its name (extension checks) and the prefix
    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(TEMP_PREFIX) and seen[0].name.endswith("-model.keras")
