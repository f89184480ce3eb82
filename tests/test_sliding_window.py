"""Sliding-window inference against MONAI's sliding_window_inference, and what must hold
whatever the reference: a per-voxel model gives its per-voxel output, windows come in
batches of at most batch_size, and the output is the input's size."""

import numpy as np
import pytest

from senet.segmentation import gaussian_importance, sliding_window_inference, window_starts

_W = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
_SLOPES = np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)


def _per_voxel(batch):
    return np.tanh(batch @ _W)


def _positional(batch):
    """Per voxel, plus where the voxel is in its window along every axis (a different slope
    per axis and output): windows disagree where they overlap, so the output depends on the
    weights and on where the windows are."""
    out = _per_voxel(batch)
    spatial = batch.shape[1:-1]
    for axis, size in enumerate(spatial):
        position = np.arange(size, dtype=np.float32) / size
        shape = [1] * (len(spatial) + 2)
        shape[axis + 1] = size
        out = out + position.reshape(shape) * _SLOPES[axis]
    return out


CASES = [
    ((20, 23), (8, 8), 0.25, "gaussian"),
    ((20, 23), (8, 8), 0.25, "constant"),
    ((20, 23), (8, 8), 0.5, "gaussian"),
    ((20, 23), (8, 8), 0.5, "constant"),
    ((19, 30), (6, 10), 0.5, "gaussian"),  # a window of another size per axis
    ((5, 23), (8, 8), 0.25, "gaussian"),  # smaller than a window along one axis
    ((8, 21), (8, 8), 0.25, "constant"),  # as large as a window along one axis
    ((3, 4), (8, 8), 0.5, "gaussian"),  # smaller than a window along both
    ((13, 17, 11), (8, 8, 8), 0.5, "gaussian"),
    ((13, 17, 11), (8, 8, 8), 0.25, "constant"),
    ((13, 6, 11), (8, 8, 8), 0.25, "gaussian"),
    ((13, 6, 11), (8, 8, 8), 0.5, "constant"),
    ((16, 16, 16), (8, 8, 8), 0.0, "gaussian"),
    ((17, 9, 12), (6, 8, 5), 0.6, "gaussian"),
]


def _monai_sliding(volume, patch, overlap, mode, batch_size):
    torch = pytest.importorskip("torch")
    inferers = pytest.importorskip("monai.inferers")

    def torch_predict(batch):
        channels_last = np.moveaxis(batch.numpy(), 1, -1)
        return torch.tensor(np.moveaxis(_positional(channels_last), -1, 1))

    reference = inferers.sliding_window_inference(
        torch.tensor(np.moveaxis(volume, -1, 0)[None]),
        patch,
        batch_size,
        torch_predict,
        overlap=overlap,
        mode=mode,
    )
    return np.moveaxis(reference.numpy()[0], 0, -1)


@pytest.mark.slow  # loads torch and MONAI (seconds); the quick lane checks the rest
@pytest.mark.parametrize("shape, patch, overlap, mode", CASES)
def test_sliding_window_matches_monai(shape, patch, overlap, mode):
    volume = np.random.default_rng(len(shape)).random((*shape, 2), dtype=np.float32)
    ours = sliding_window_inference(
        volume, patch, _positional, overlap=overlap, mode=mode, batch_size=3
    )
    reference = _monai_sliding(volume, patch, overlap, mode, 3)
    assert ours.shape == reference.shape == (*shape, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    # the windows do disagree: a per-voxel blend of any other weights would not match
    if mode == "gaussian" and overlap and min(s - p for s, p in zip(shape, patch, strict=True)) > 0:
        plain = sliding_window_inference(
            volume, patch, _positional, overlap=overlap, mode="constant"
        )
        assert np.abs(plain - ours).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("size", [(8, 8), (9, 7), (16, 12, 10), (5, 1, 3)])
@pytest.mark.parametrize("sigma_scale", [0.125, 0.3])
def test_gaussian_weights_are_monais_importance_map(size, sigma_scale):
    pytest.importorskip("torch")
    data_utils = pytest.importorskip("monai.data.utils")
    reference = data_utils.compute_importance_map(size, mode="gaussian", sigma_scale=sigma_scale)
    ours = gaussian_importance(size, sigma_scale)
    assert ours.dtype == np.float32 and ours.shape == size
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-6)


@pytest.mark.slow
def test_window_starts_are_monais_dense_patch_slices():
    pytest.importorskip("torch")
    data_utils = pytest.importorskip("monai.data.utils")
    inferer_utils = pytest.importorskip("monai.inferers.utils")
    for size in (8, 9, 15, 16, 17, 31, 64, 100):
        for window in (4, 7, 8, 16):
            if window > size:
                continue
            for overlap in (0.0, 0.25, 0.3, 0.5, 0.6, 0.9):
                interval = inferer_utils._get_scan_interval((size,), (window,), 1, (overlap,))
                slices = data_utils.dense_patch_slices((size,), (window,), interval)
                expected = [box[0].start for box in slices]
                assert window_starts(size, window, overlap) == expected, (size, window, overlap)


def test_a_per_voxel_model_gives_its_own_output_in_batches_of_at_most_batch_size():
    volume = np.random.default_rng(1).random((19, 9, 21, 2), dtype=np.float32)
    seen = []

    def counting(batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (8, 8, 8, 2)
        seen.append(len(batch))
        return _per_voxel(batch)

    for mode in ("gaussian", "constant"):
        seen.clear()
        out = sliding_window_inference(volume, (8, 8, 8), counting, overlap=0.5, mode=mode)
        np.testing.assert_allclose(out, _per_voxel(volume), rtol=1e-5, atol=1e-6)
        windows = [len(window_starts(size, 8, 0.5)) for size in (19, 9, 21)]
        assert windows == [4, 2, 5]  # 0 4 8 11; 0 1; 0 4 8 12 13
        assert max(seen) <= 4 and sum(seen) == 4 * 2 * 5
        assert out.shape == (19, 9, 21, 3) and out.dtype == np.float32
    seen.clear()
    sliding_window_inference(volume, (8, 8, 8), counting, overlap=0.5, batch_size=7)
    assert seen == [7] * 5 + [5]


def test_padding_a_small_volume_and_a_2d_image():
    image = np.random.default_rng(2).random((5, 30, 2)) * 3  # float64, smaller on one axis
    out = sliding_window_inference(image, (8, 8), _per_voxel, overlap=0.25, batch_size=2)
    assert out.shape == (5, 30, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, _per_voxel(image.astype(np.float32)), rtol=1e-5, atol=1e-6)


def test_progress_and_num_outputs():
    volume = np.zeros((20, 20, 2), np.float32)
    calls = []
    out = sliding_window_inference(
        volume, (8, 8), _per_voxel, batch_size=4, num_outputs=3, progress=lambda *a: calls.append(a)
    )
    assert out.shape == (20, 20, 3)
    assert calls == [(4, 9), (8, 9), (9, 9)]  # 3 x 3 windows: 0 6 12 along each axis
    with pytest.raises(ValueError, match="`predict` must be"):
        sliding_window_inference(volume, (8, 8), _per_voxel, num_outputs=4)
    with pytest.raises(ValueError, match="`predict` must be"):
        sliding_window_inference(volume, (8, 8), lambda batch: batch[:, :4])


def test_windows_weights_and_bad_arguments():
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(10, 4, 0.25) == [0, 3, 6]
    assert window_starts(3, 8, 0.25) == [0]
    assert window_starts(8, 8, 0.5) == [0]
    weights = gaussian_importance((9, 7))
    assert weights.shape == (9, 7) and weights[4, 3] == pytest.approx(1.0)
    sigma_rows, sigma_cols = 9 * 0.125, 7 * 0.125
    row_edge = np.exp(-(4**2) / (2 * sigma_rows**2))
    assert weights[0, 3] == pytest.approx(row_edge, rel=1e-5)
    corner = row_edge * np.exp(-(3**2) / (2 * sigma_cols**2))  # the smallest: no clamping
    assert weights.min() == pytest.approx(max(corner, 1e-3), rel=1e-5)
    # a wide window: the Gaussian's tails fall below 1e-3 and are clamped there
    wide = gaussian_importance((61,))
    assert wide.min() == pytest.approx(1e-3) and (wide == wide.min()).sum() == 4
    volume = np.zeros((10, 10, 1), np.float32)
    for arguments, name in [
        ({"volume": np.zeros((4, 4))}, "volume"),
        ({"patch_size": (8, 0)}, "patch_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"mode": "triangle"}, "mode"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_outputs": 0}, "num_outputs"),
    ]:
        call = {"volume": volume, "patch_size": (8, 8), "predict": _per_voxel, **arguments}
        with pytest.raises(ValueError, match=f"`{name}`"):
            sliding_window_inference(
                call.pop("volume"), call.pop("patch_size"), call.pop("predict"), **call
            )
