"""Does freezing the weights into constants change what SE costs? Fused ResNet-50s, interleaved.

Times the plain (folded) and the SE (fused) ResNet-50 at 224x224 two ways each, in one
interleaved loop (``senet.bench.time_interleaved``): the ``tf.function`` senet runs (weights
read from variables) and the same concrete function frozen with the weights as constants
(``convert_variables_to_constants_v2``). Prints the medians and SE's overhead in each mode.

    python benchmarks/bench_frozen.py BATCH ROUNDS      # e.g. 1 40
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("batch", type=int, help="batch size, e.g. 1")
    parser.add_argument("rounds", type=int, help="timed rounds, e.g. 40")
    args = parser.parse_args(argv)
    batch, rounds = args.batch, args.rounds
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from senet.bench import time_interleaved
    from senet.models import fuse_for_inference, resnet

    keras.utils.set_random_seed(0)
    shape = (224, 224, 3)
    plain = fuse_for_inference(resnet(50, input_shape=shape), fold_plain=True)[0]
    se = fuse_for_inference(
        resnet(50, input_shape=shape, attention="se", reduction=16), fold_plain=True
    )[0]
    x = tf.constant(np.random.default_rng(0).random((batch, *shape), dtype=np.float32))
    runs = {}
    for name, m in (("plain", plain), ("se", se)):
        f = tf.function(lambda v, m=m: m(v, training=False))
        cf = f.get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
        frozen = convert_variables_to_constants_v2(cf)
        runs[f"{name} tf.function"] = lambda f=f: f(x).numpy()
        runs[f"{name} frozen"] = lambda fr=frozen: fr(x)[0].numpy()
        a = runs[f"{name} tf.function"]()
        b = runs[f"{name} frozen"]()
        print(name, "max diff frozen vs function", float(np.abs(a - b).max()))
    t = time_interleaved(runs, rounds=rounds, warmup=3)
    for k, v in t.items():
        print(f"{k:22s} {v['ms']:8.2f} ms")
    for mode in ("tf.function", "frozen"):
        print(
            mode,
            "SE overhead %+.1f%%" % (100 * (t[f"se {mode}"]["ms"] / t[f"plain {mode}"]["ms"] - 1)),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
