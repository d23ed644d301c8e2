"""The toy database: synthetic 8-dimensional "face features" generated on the fly.

Client ``c`` has its centre drawn from a generator seeded with ``c``; each of
its samples is that centre plus unit Gaussian noise drawn from a generator
seeded with ``(seed, c, sample)``, so every run gives the same data. The
entries are ordered client by client: the ``client`` output has one unit per
client, ``features`` one unit per sample.
"""

import collections

import numpy as np

from papyflow.blocks.database import View

DIMENSIONS = 8

# One entry per sample; each output follows the field of its name: ``features``
# is a key unique to the sample, so that every sample is a unit of its own.
Entry = collections.namedtuple("Entry", ["client", "sample", "features"])


def centre(client):
    return np.random.default_rng(client).normal(0.0, 3.0, DIMENSIONS)


class Samples(View):
    """``clients`` x ``samples`` entries; ``seed`` tells the sets apart."""

    def index(self, root_folder, parameters):
        return [Entry(c, s, f"{c}-{s}") for c in range(parameters["clients"])
                for s in range(parameters["samples"])]

    def setup(self, root_folder, parameters, objs, start_index=None, end_index=None):
        self.seed = parameters["seed"]
        self.centres = {}  # drawn once per client
        return super().setup(root_folder, parameters, objs, start_index, end_index)

    def get(self, output, index):
        entry = self.objs[index]
        if output == "client":
            return {"id": entry.client}
        if entry.client not in self.centres:
            self.centres[entry.client] = centre(entry.client)
        noise = np.random.default_rng([self.seed, entry.client, entry.sample])
        return {"value": self.centres[entry.client] + noise.normal(0.0, 1.0, DIMENSIONS)}
