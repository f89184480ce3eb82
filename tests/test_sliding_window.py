"""Sliding-window inference against MONAI's sliding_window_inference, and what must hold
whatever the reference: a per-voxel model gives its per-voxel output, windows come in
batches of at most batch_size, and the output is the input's size."""

import numpy as np
import pytest

from senet.segmentation import gaussian_importance, sliding_window_inference, window_starts

_W = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)


def _per_voxel(batch):
    return np.tanh(batch @ _W)


def _positional(batch):
    """Per voxel, plus where the voxel is in its window: windows disagree where they overlap,
    so the output depends on the weights and the window positions."""
    position = np.arange(batch.shape[1], dtype=np.float32) / batch.shape[1]
    return _per_voxel(batch) + position.reshape((1, -1) + (1,) * (batch.ndim - 2))


CASES = [
    ((20, 23), (8, 8), 0.25, "gaussian"),
    ((20, 23), (8, 8), 0.5, "constant"),
    ((5, 23), (8, 8), 0.25, "gaussian"),  # smaller than a window along one axis
    ((13, 17, 11), (8, 8, 8), 0.5, "gaussian"),
    ((13, 6, 11), (8, 8, 8), 0.25, "constant"),
    ((16, 16, 16), (8, 8, 8), 0.0, "gaussian"),
]


@pytest.mark.slow  # loads torch and MONAI (seconds); the quick lane checks the rest
@pytest.mark.parametrize("shape, patch, overlap, mode", CASES)
def test_sliding_window_matches_monai(shape, patch, overlap, mode):
    torch = pytest.importorskip("torch")
    inferers = pytest.importorskip("monai.inferers")

    def torch_predict(batch):
        channels_last = np.moveaxis(batch.numpy(), 1, -1)
        return torch.tensor(np.moveaxis(_positional(channels_last), -1, 1))

    volume = np.random.default_rng(len(shape)).random((*shape, 2), dtype=np.float32)
    ours = sliding_window_inference(
        volume, patch, _positional, overlap=overlap, mode=mode, batch_size=3
    )
    reference = inferers.sliding_window_inference(
        torch.tensor(np.moveaxis(volume, -1, 0)[None]),
        patch,
        3,
        torch_predict,
        overlap=overlap,
        mode=mode,
    )
    np.testing.assert_allclose(ours, np.moveaxis(reference.numpy()[0], 0, -1), atol=1e-5)


def test_a_per_voxel_model_gives_its_own_output_in_batches_of_at_most_batch_size():
    volume = np.random.default_rng(1).random((19, 9, 21, 2), dtype=np.float32)
    seen = []

    def counting(batch):
        seen.append(len(batch))
        return _per_voxel(batch)

    out = sliding_window_inference(volume, (8, 8, 8), counting, overlap=0.5, batch_size=4)
    np.testing.assert_allclose(out, _per_voxel(volume), atol=1e-5)
    windows = [len(window_starts(size, 8, 0.5)) for size in (19, 9, 21)]
    assert windows == [4, 2, 5]  # 0 4 8 11; 0 1; 0 4 8 12 13
    assert max(seen) <= 4 and sum(seen) == 4 * 2 * 5
    assert out.shape == (19, 9, 21, 3) and out.dtype == np.float32


def test_windows_and_weights():
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(10, 4, 0.25) == [0, 3, 6]
    assert window_starts(3, 8, 0.25) == [0]
    weights = gaussian_importance((9, 7))
    assert weights.shape == (9, 7) and weights[4, 3] == pytest.approx(1.0)
    sigma = 9 * 0.125
    assert weights[0, 3] == pytest.approx(max(np.exp(-(4**2) / (2 * sigma**2)), 1e-3), rel=1e-5)
    with pytest.raises(ValueError, match="volume"):
        sliding_window_inference(np.zeros((4, 4)), (2, 2, 2), _per_voxel)
