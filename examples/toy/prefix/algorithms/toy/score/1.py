"""Scores each probe against every client model: the cosine similarity.

The models (a secondary group, ``models``) are read once, in ``prepare``;
the probes (the main group) come one per step, with the client they are from.
"""

import numpy as np


class Algorithm:
    def prepare(self, data_loaders):
        loader = data_loaders.loaderOf("model")
        models, clients = [], []
        for i in range(len(loader)):
            data, _, _ = loader[i]
            value = data["model"].value
            models.append(value / np.linalg.norm(value))
            clients.append(data["model_client"].id)
        self.models = np.array(models)
        self.clients = np.array(clients, dtype=np.int32)
        return True

    def process(self, inputs, data_loaders, outputs):
        probe = inputs["probe"].data.value
        values = self.models @ (probe / np.linalg.norm(probe))
        outputs["scores"].write({"client": inputs["client"].data.id, "values": values,
                                 "models": self.clients})
        return True
