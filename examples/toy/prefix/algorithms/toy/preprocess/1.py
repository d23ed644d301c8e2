"""Scales each feature vector to unit length (a zero vector stays zero), then
passes it through ``layers`` layers of a fixed random network.

Each layer rotates the vector by a fixed orthogonal matrix (the same in every
process: drawn from a generator seeded with 0) and bends it with ``tanh``,
then scales it back to unit length. With the default ``layers = 0`` the
vector is only scaled; more layers cost more CPU per sample (the experiment
benchmark uses them to make this the heavy block).
"""

import numpy as np


def rotation(size):
    matrix, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(size, size)))
    return matrix


def unit(value):
    norm = np.linalg.norm(value)
    return value / norm if norm else value


class Algorithm:
    def setup(self, parameters):
        self.layers = int(parameters["layers"])
        self.matrix = None
        return True

    def process(self, inputs, data_loaders, outputs):
        value = unit(inputs["features"].data.value)
        if self.layers:
            if self.matrix is None:
                self.matrix = rotation(value.size)
            for _ in range(self.layers):
                value = unit(np.tanh(self.matrix @ value))
        outputs["features"].write({"value": value})
        return True
