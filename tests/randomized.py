"""Random batch-norm statistics and SE biases for networks under test (fresh ones are all
zeros and ones, which hide mistakes in folding and fusing)."""

import keras
import numpy as np

from senet.layers import SqueezeExcite


def randomize(model, seed=0, *, gamma=(0.3, 0.8), perturbed=(SqueezeExcite,)):
    """Random BN statistics, gamma and beta, and random weights offsets of the layers of
    the ``perturbed`` classes (SE: its biases are all zero/one when fresh).

    gamma stays below 1 by default: with larger gains a random 50-layer network is chaotic,
    and a 1e-6 change of its input moves its last feature map by 1e-2 in float32, fused or
    not.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(*gamma, c),  # gamma
                    rng.normal(0.0, 0.3, c),  # beta
                    rng.normal(0.0, 0.3, c),  # moving mean
                    rng.uniform(0.5, 2.0, c),  # moving variance
                ]
            )
        elif isinstance(layer, perturbed):
            layer.set_weights([w + rng.normal(0.0, 0.3, w.shape) for w in layer.get_weights()])
    return model
