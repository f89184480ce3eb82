"""Run the backend-agnostic suites (and the tf.data pipeline's fit) under JAX and PyTorch,
each in its own process, and the layout-sensitive ones on TensorFlow with oneDNN off.

Keras picks its backend once per process, so the layer (and explain) tests are
re-run in subprocesses with ``KERAS_BACKEND`` set. TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS``
once, when it loads: without oneDNN (its default on CPUs without AVX-512-class features) its
CPU convolutions take no channels_first input, so the layer contract and the channels_first
network tests run once more in a process with oneDNN off, on every machine.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["tests/layers", "tests/explain"]
# and the one test of the tf.data pipeline feeding model.fit (on JAX and PyTorch too)
PIPELINE_FIT = "tests/data/test_pipeline.py::test_fit_on_a_dataset"
# Files of those suites that run no backend code: the kind registry's bookkeeping, focus
# scores in NumPy, figures in matplotlib. They run once, in the parent run.
BACKEND_FREE = [
    "tests/layers/test_registry.py",
    "tests/explain/test_focus.py",
    "tests/explain/test_overlay.py",
]


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="the parent run spawns the other backends",
)
@pytest.mark.slow  # minutes: every layer and explain test again, compiled anew by JAX
@pytest.mark.parametrize("backend,module", [("jax", "jax"), ("torch", "torch")])
def test_suites_pass_on_backend(backend, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    # "not slow": the suites' slow tests start fresh processes on every backend themselves;
    # "-n 0": one process compiles each program once (two xdist workers would each compile
    # it, beside the outer run's own two)
    suites = [s for s in SUITES if (ROOT / s).exists()]
    suites.append(PIPELINE_FIT)
    ignored = [f"--ignore={path}" for path in BACKEND_FREE]
    _assert_pytest_passes(suites, "-m", "not slow", "-n", "0", *ignored, KERAS_BACKEND=backend)


def _assert_pytest_passes(paths, *options, **env):
    """``pytest -q -x *options *paths`` in a fresh process with ``env`` added passes."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *options, *paths],
        cwd=ROOT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


ONEDNN_OFF_SUITES = ["tests/layers/test_layer_contract.py", "tests/models/test_channels_first.py"]


def _onednn_is_off_here() -> bool:
    """Whether this process's TensorFlow runs without oneDNN: its CPU Conv2D then takes no
    channels_first (NCHW) input, the very thing the re-run is about."""
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 3, 3)), tf.zeros((1, 1, 1, 1)), 1, "VALID", data_format="NCHW")
    except tf.errors.UnimplementedError:
        return True
    return False


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="TensorFlow only",
)
@pytest.mark.slow  # a TensorFlow process re-runs two files
def test_channels_first_suites_pass_with_onednn_off(request):
    # Every process of this run has the same TensorFlow settings: where oneDNN is off here
    # (TF_ENABLE_ONEDNN_OPTS=0, or a CPU without AVX-512, TensorFlow's default there), the
    # two files run without it in this very run, and a re-run would prove nothing new.
    selected = {item.nodeid.split("::")[0] for item in request.session.items}
    if _onednn_is_off_here() and selected >= set(ONEDNN_OFF_SUITES):
        pytest.skip("oneDNN is off in this run already, and it runs both files")
    _assert_pytest_passes(
        ONEDNN_OFF_SUITES, "-n", "0", KERAS_BACKEND="tensorflow", TF_ENABLE_ONEDNN_OPTS="0"
    )
