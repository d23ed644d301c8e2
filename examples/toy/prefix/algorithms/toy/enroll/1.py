"""Enrolls one model per client: the mean of the client's feature vectors.

``features`` comes once per sample, ``client`` once per client (a unit that
spans all of the client's samples): the vectors are gathered until the
client's unit is done, then the model is written as one unit spanning the
client's samples.
"""

import numpy as np


class Algorithm:
    def setup(self, parameters):
        self.vectors = []
        return True

    def process(self, inputs, data_loaders, outputs):
        self.vectors.append(inputs["features"].data.value)
        if inputs["client"].isDataUnitDone():
            outputs["model"].write({"value": np.mean(self.vectors, axis=0)})
            self.vectors = []
        return True
