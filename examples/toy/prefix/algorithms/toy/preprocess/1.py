"""Scales each feature vector to unit length (a zero vector stays zero)."""

import numpy as np


class Algorithm:
    def process(self, inputs, data_loaders, outputs):
        value = inputs["features"].data.value
        norm = np.linalg.norm(value)
        outputs["features"].write({"value": value / norm if norm else value})
        return True
