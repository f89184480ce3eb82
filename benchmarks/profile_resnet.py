"""Where SE's inference time goes in ResNet-50: time per TensorFlow op type, plain vs SE.

Both models take the inference path senet uses (``fuse_for_inference``: the SE model's
residual tails fused, the plain model's folded the same way, like for like). Each is frozen
into one TensorFlow graph (variables as constants) and run ``--rounds`` times in a
``tf.compat.v1.Session`` with full tracing; the kernel time of every node is summed by op
type (``Conv2D``, ``_FusedConv2D``, ``Mean``, ``MatMul``, ``Sigmoid``, ``Mul``, ...) and
divided by the rounds. The table shows each op type's milliseconds per forward pass in both
models and the difference: what SE adds, op by op, and how many of those ops run per pass
(each op launch costs time at batch 1 however small the op).

Traced times include the tracer's own overhead per op, so their totals exceed the untraced
latency of ``bench_resnet.py``; the split is what this script is for.

    python benchmarks/profile_resnet.py --batch 1 --rounds 20
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def frozen_graph(model, batch: int):
    """``(graph_def, input name, output name)`` of ``model`` at ``batch``, weights inlined."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((batch, *model.inputs[0].shape[1:]), tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(function)
    return frozen.graph.as_graph_def(), frozen.inputs[0].name, frozen.outputs[0].name


def op_times(model, batch: int, rounds: int) -> tuple[dict[str, float], dict[str, int], float]:
    """Per op type: mean traced ms per pass and node count; and the mean wall ms per pass."""
    import numpy as np
    import tensorflow as tf

    graph_def, input_name, output_name = frozen_graph(model, batch)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    kinds = {node.name: node.op for node in graph_def.node}
    x = np.random.default_rng(0).random((batch, *model.inputs[0].shape[1:]), dtype=np.float32)
    totals: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    wall = 0.0
    with tf.compat.v1.Session(graph=graph) as session:
        for _ in range(3):  # warm-up
            session.run(output_name, {input_name: x})
        for round_ in range(rounds):
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            metadata = tf.compat.v1.RunMetadata()
            started = time.perf_counter()
            session.run(output_name, {input_name: x}, options=options, run_metadata=metadata)
            wall += time.perf_counter() - started
            seen = collections.Counter()
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    # "name = OpType(inputs)": the op grappler actually ran (e.g. _FusedConv2D)
                    label = node.timeline_label
                    if " = " in label:
                        kind = label.split(" = ", 1)[1].split("(", 1)[0]
                    else:
                        kind = kinds.get(node.node_name.split(":")[0])
                    if kind is None or kind in (
                        "Const",
                        "Placeholder",
                        "NoOp",
                        "_SOURCE",
                        "_Arg",
                        "_Retval",
                    ):
                        continue
                    totals[kind] += (node.all_end_rel_micros or node.op_end_rel_micros) / 1e3
                    seen[kind] += 1
            if round_ == 0:
                counts = seen
    return {k: v / rounds for k, v in totals.items()}, dict(counts), 1e3 * wall / rounds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 rounds at 64x64")
    args = parser.parse_args(argv)

    import keras

    from senet.bench import machine_info
    from senet.models import fuse_for_inference, resnet

    size = 64 if args.quick else 224
    rounds = 3 if args.quick else args.rounds
    keras.utils.set_random_seed(0)
    shape = (size, size, 3)
    models = {
        "plain": fuse_for_inference(resnet(50, input_shape=shape), fold_plain=True)[0],
        "SE": fuse_for_inference(
            resnet(50, input_shape=shape, attention="se", reduction=16), fold_plain=True
        )[0],
    }
    started = time.perf_counter()
    load = os.getloadavg()
    results = {name: op_times(model, args.batch, rounds) for name, model in models.items()}
    info = machine_info()
    print(
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores; {info.get('date')}; load "
        f"average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{time.perf_counter() - started:.0f} s."
    )
    print(f"Command: `python benchmarks/profile_resnet.py {shlex.join(sys.argv[1:])}`\n")
    print(
        f"ResNet-50 at {size}x{size}, batch {args.batch}, fused inference path, {rounds} "
        "traced passes each.\n"
    )
    (plain_ms, plain_n, plain_wall), (se_ms, se_n, se_wall) = results["plain"], results["SE"]
    kinds = sorted(
        set(plain_ms) | set(se_ms), key=lambda k: -(se_ms.get(k, 0) + plain_ms.get(k, 0))
    )
    print("| op type | plain: ops | plain: ms | SE: ops | SE: ms | SE - plain ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        a, b = plain_ms.get(kind, 0.0), se_ms.get(kind, 0.0)
        print(
            f"| {kind} | {plain_n.get(kind, 0)} | {a:.2f} | {se_n.get(kind, 0)} | {b:.2f} | "
            f"{b - a:+.2f} |"
        )
    total_plain, total_se = sum(plain_ms.values()), sum(se_ms.values())
    print(
        f"| **all kernels** | {sum(plain_n.values())} | {total_plain:.2f} | "
        f"{sum(se_n.values())} | {total_se:.2f} | {total_se - total_plain:+.2f} "
        f"({100 * (total_se / total_plain - 1):+.1f}%) |"
    )
    print(
        f"| wall time per traced pass | | {plain_wall:.2f} | | {se_wall:.2f} | "
        f"{se_wall - plain_wall:+.2f} ({100 * (se_wall / plain_wall - 1):+.1f}%) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
