"""Training across processes: the worker's role, the strategy and what the chief shares.

A multi-worker run is one data-parallel training spread over processes (and hosts), as
TensorFlow's ``MultiWorkerMirroredStrategy`` runs it: every worker holds a copy of the
model, reads its share of each global batch, and the gradients are all-reduced every step.
On the JAX backend the same ``TF_CONFIG`` starts a JAX cluster instead
(:func:`join_jax_cluster`: ``keras.distribution.initialize`` with the chief's address as the
coordinator, gloo collectives on CPU) and ``keras.distribution.DataParallel`` shards every
batch over all processes' devices. ``TF_CONFIG`` tells each process the cluster and its own
place in it::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}'

The chief (the ``chief`` task, else worker 0) alone writes the run directory. The other
workers never read it: the chief sends them the run's config, where a resumed run stands
(:func:`broadcast_json`) and its weights and optimizer state (:func:`broadcast_variables`),
so every worker continues from the chief's last finished epoch, on hosts that share no
files as well as on one machine.

:func:`multi_worker_strategy` works around two defects of Keras 3's TensorFlow trainer under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, tensorflow/tensorflow#72388): before
the first step ``fit`` calls ``strategy.reduce`` on a whole ``(x, y)`` batch, which
TensorFlow's ``reduce`` does not take (``Attempt to convert a value (PerReplica:{...`` with a
batch of pixels), and it reduces scalar metrics over ``axis=0``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "average_variables",
    "cluster_addresses",
    "broadcast_json",
    "broadcast_variables",
    "check_backend",
    "cluster_size",
    "is_chief",
    "join_jax_cluster",
    "multi_worker_strategy",
    "replicas_of",
    "task_name",
]


def _tf_config() -> dict[str, Any]:
    try:
        value = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def is_chief() -> bool:
    """Whether this process writes the run directory: ``TF_CONFIG``'s chief, else worker 0.

    True without ``TF_CONFIG`` (a single process) and for a task of no known type.
    """
    tf_config = _tf_config()
    task = tf_config.get("task") or {}
    if task.get("type") in (None, "chief"):
        return True
    has_chief = "chief" in (tf_config.get("cluster") or {})
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not has_chief


def cluster_size() -> int:
    """How many chief and worker tasks ``TF_CONFIG`` lists (1 without it)."""
    cluster = _tf_config().get("cluster") or {}
    return max(1, sum(len(cluster.get(kind) or ()) for kind in ("chief", "worker")))


def task_name() -> str:
    """This process's task as ``TF_CONFIG`` names it, e.g. ``"worker 1"`` (``"chief"``)."""
    task = _tf_config().get("task") or {}
    kind = task.get("type") or "chief"
    return kind if kind == "chief" else f"{kind} {task.get('index', 0)}"


def cluster_addresses() -> tuple[list[str], int]:
    """``TF_CONFIG``'s chief and worker addresses, chief first, and this task's index in them.

    The order is the one :func:`is_chief` implies: the chief (or worker 0) is index 0.

    Example: with ``TF_CONFIG`` ``{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type":
    "worker", "index": 1}}`` it returns ``(["a:1", "b:2"], 1)``.
    """
    tf_config = _tf_config()
    cluster = tf_config.get("cluster") or {}
    chiefs, workers = list(cluster.get("chief") or ()), list(cluster.get("worker") or ())
    task = tf_config.get("task") or {}
    kind, index = task.get("type") or "chief", int(task.get("index", 0) or 0)
    position = index if kind == "chief" else len(chiefs) + index
    return chiefs + workers, position


def join_jax_cluster():
    """Join the JAX cluster ``TF_CONFIG`` describes; a ``keras.distribution.DataParallel``.

    Calls ``keras.distribution.initialize`` with every task's address (the chief's is the
    coordinator), the number of tasks and this one's index, after choosing gloo for JAX's
    CPU collectives (JAX has none on CPU otherwise). Must run before anything else uses JAX
    in the process. The distribution's mesh holds every process's devices; in its scope
    ``fit`` gives each process its share of every global batch of a ``tf.data`` dataset.
    """
    import jax
    import keras

    addresses, index = cluster_addresses()
    if not addresses or not 0 <= index < len(addresses):
        raise ValueError(
            f"TF_CONFIG must list this task among its chief and worker addresses, got "
            f"{os.environ.get('TF_CONFIG', '')[:200]!r}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(",".join(addresses), len(addresses), index)
    return keras.distribution.DataParallel()


def _is_jax_cluster(strategy) -> bool:
    """Whether ``strategy`` is a keras.distribution (a JAX cluster), not a tf.distribute one."""
    return not hasattr(strategy, "num_replicas_in_sync")


def replicas_of(strategy) -> int:
    """Devices one step of ``strategy`` (tf.distribute or keras.distribution) runs on."""
    if _is_jax_cluster(strategy):
        import jax

        return len(jax.devices())
    return int(strategy.num_replicas_in_sync)


def model_replicas(model) -> int:
    """Devices a call of ``model`` is split over: its tf.distribute strategy's replicas, or
    on JAX those of the ``keras.distribution`` in scope (its batch axis); 1 otherwise."""
    import keras

    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    # JAX: a keras.distribution in scope splits every batch predict() sees over its batch axis
    distribution = keras.distribution.distribution()
    mesh = getattr(distribution, "device_mesh", None)
    if mesh is None or getattr(distribution, "batch_dim_name", None) not in mesh.axis_names:
        return 1
    return int(mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)])


def multi_worker_strategy():
    """A ``tf.distribute.MultiWorkerMirroredStrategy`` (from ``TF_CONFIG``) that Keras can fit.

    Its ``reduce`` takes a nested structure (reduced leaf by leaf) and a scalar with an
    ``axis`` (reduced across replicas only); otherwise it is TensorFlow's strategy, with
    TensorFlow's collectives. Create it before any other TensorFlow work in the process.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if value is None:
                return None
            if not isinstance(value, tf.distribute.DistributedValues) and tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda leaf: self.reduce(reduce_op, leaf, axis), value)
            first = value
            if isinstance(value, tf.distribute.DistributedValues):
                first = value.values[0]
            shape = getattr(first, "shape", None)
            if axis is not None and shape is not None and shape.rank == 0:
                axis = None  # a scalar has no batch axis: reduce across replicas only
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerStrategy()


def _broadcast_array(strategy, value: np.ndarray) -> np.ndarray:
    """``value`` as replica 0 (on the chief) holds it, on every worker.

    TensorFlow: an all-reduce sum (in float64) to which only replica 0 adds anything: exact
    for floats and for integers below 2**53. JAX: ``broadcast_one_to_all`` in ``value``'s
    own dtype (as JAX holds it: 64-bit types become 32-bit without ``jax_enable_x64``).
    """
    if _is_jax_cluster(strategy):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value)))
    import tensorflow as tf

    value = tf.constant(np.asarray(value, np.float64))
    zeros = tf.zeros_like(value)

    def local(context):
        return value if context.replica_id_in_sync_group == 0 else zeros

    per_replica = strategy.experimental_distribute_values_from_function(local)
    return np.asarray(strategy.reduce("SUM", per_replica, axis=None))


def broadcast_json(strategy, value: Any) -> Any:
    """The chief's ``value`` (JSON-able) on every worker; the others' ``value`` is ignored.

    Every worker must call it at the same point (it is a collective operation).
    """
    data = np.frombuffer(json.dumps(value).encode() if is_chief() else b"", np.uint8)
    size = int(_broadcast_array(strategy, np.asarray([data.size], np.int32))[0])
    padded = np.zeros(size, np.uint8 if _is_jax_cluster(strategy) else np.float64)
    padded[: min(size, data.size)] = data[:size]
    received = _broadcast_array(strategy, padded).astype(np.uint8)
    return json.loads(received.tobytes().decode())


def broadcast_variables(
    strategy, variables: Sequence[Any], values: Sequence[np.ndarray] | None = None
) -> None:
    """Give every worker's ``variables`` the chief's values (one collective for all).

    Every worker passes the same variables (the same model, built the same way) in the
    same order. ``values``: what the chief sends, one array per variable (default: the
    variables' own values; ignored on the other workers).
    """
    if not variables:
        return
    import keras

    if values is None or not is_chief():
        values = [keras.ops.convert_to_numpy(variable) for variable in variables]
    values = [np.asarray(value) for value in values]
    if _is_jax_cluster(strategy):
        from jax.experimental import multihost_utils

        # one collective for the whole list, each array in its own dtype
        received = multihost_utils.broadcast_one_to_all(values)
        for variable, value in zip(variables, received, strict=True):
            variable.assign(np.asarray(value))
        return
    flat = np.concatenate([value.astype(np.float64).ravel() for value in values])
    received = _broadcast_array(strategy, flat)
    start = 0
    for variable, value in zip(variables, values, strict=True):
        part = received[start : start + value.size].reshape(value.shape)
        variable.assign(part.astype(value.dtype))
        start += value.size


def average_variables(strategy, variables: Sequence[Any]) -> None:
    """Set ``variables`` on every worker to their mean over the workers (one collective).

    Keras 3 keeps non-trainable weights such as batch normalization's moving statistics
    per replica (aggregation "none"), so after a distributed epoch each worker holds its
    own; averaging them at the epoch end makes every worker save and evaluate one model.
    """
    if not variables:
        return
    import keras
    import tensorflow as tf

    values = [np.asarray(keras.ops.convert_to_numpy(variable)) for variable in variables]
    flat = tf.constant(np.concatenate([value.astype(np.float64).ravel() for value in values]))
    per_replica = strategy.experimental_distribute_values_from_function(lambda context: flat)
    mean = np.asarray(strategy.reduce("MEAN", per_replica, axis=None))
    start = 0
    for variable, value in zip(variables, values, strict=True):
        variable.assign(mean[start : start + value.size].reshape(value.shape).astype(value.dtype))
        start += value.size


def check_backend(backend: str, processes: int) -> None:
    """Raise ValueError unless ``backend`` can train one run across ``processes`` processes.

    TensorFlow (``MultiWorkerMirroredStrategy``) and JAX (``keras.distribution`` with a
    coordinator, gloo collectives on CPU) can; PyTorch cannot in senet.
    """
    if processes <= 1 or backend in ("tensorflow", "jax"):
        return
    raise ValueError(
        f"training across processes ({processes} asked) needs the tensorflow or jax backend; "
        f"on {backend} senet trains in one process only: set KERAS_BACKEND=tensorflow or "
        "KERAS_BACKEND=jax"
    )
