import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil  # noqa: E402
import tempfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

_JAX_CACHE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config):
    """One on-disk JAX compilation cache for every process of the run.

    Many tests start `senet train` (and other code) on the JAX backend in fresh processes,
    and each would compile the same programs again: the model's initialisers alone take
    about 9 s on the first build in a process, 1.4 s from the cache. Set here, in the
    controlling process before xdist starts its workers, so that they and every process
    they start inherit it; any size, any compile time is cached. A size limit turns on
    JAX's file lock, which the concurrent processes need. The results are the same with
    or without it (a cached program is the compiled program). An environment that already
    names a cache keeps it.
    """
    if hasattr(config, "workerinput"):
        return
    # senet's cache (LiteRT exports of senet serve and predict --runtime litert) in a
    # temporary directory, never the user's ~/.cache
    if "SENET_CACHE_DIR" not in os.environ:
        config._senet_cache = tempfile.mkdtemp(prefix="senet-tests-cache-")
        os.environ["SENET_CACHE_DIR"] = config._senet_cache
    # XLA's backend optimisations cost more than they save on the tests' tiny programs:
    # a first JAX `senet train` of the multi-worker tests' size took 53 s with them and 34 s
    # without (2-core Zen 3), and what the tests check does not depend on them. A test that
    # sets XLA_FLAGS of its own replaces these; XLA_FLAGS set before the run are left alone.
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    if _JAX_CACHE in os.environ:
        return
    config._senet_jax_cache = tempfile.mkdtemp(prefix="senet-tests-jax-cache-")
    os.environ[_JAX_CACHE] = config._senet_jax_cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(2**31)


def pytest_unconfigure(config):
    for name in ("_senet_jax_cache", "_senet_cache"):
        cache = getattr(config, name, None)
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)


# The files that take longest, heaviest first (in-suite seconds on 2 cores, 2026-12-03:
# 117-176, 145, 105, 89, 71, 72, 61, 55, 47, 46). pytest-xdist hands whole files to its
# workers in collection order (`--dist loadfile --no-loadscope-reorder`), so these start
# first and the many short files fill the end, instead of a long file starting last.
_HEAVY_FIRST = (
    "tests/test_backends.py",
    "tests/test_multiworker_jax.py",
    "tests/test_train_options.py",
    "tests/test_multiworker.py",
    "tests/test_demo.py",
    "tests/test_train.py",
    "tests/test_export.py",
    "tests/test_run_safety.py",
    "tests/models/test_fused.py",
    "tests/models/test_timm.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(_HEAVY_FIRST)}
    # a stable sort: the tests of a file keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with float32 policy, channels_last and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
