"""The equal error rate: where the false acceptance and false rejection rates meet.

A genuine score compares a probe with its own client's model, an impostor
score with another client's. The scores are gathered step by step; at the
last step the rate is computed over every threshold (the scores themselves,
sorted once) and written once.
"""

import numpy as np


def equal_error_rate(genuine, impostor):
    """The mean of the two rates at the threshold (among the scores) where they are closest."""
    thresholds = np.concatenate([genuine, impostor])
    # genuine scores below each threshold, impostor scores at or above it
    false_rejection = np.searchsorted(np.sort(genuine), thresholds, "left") / len(genuine)
    false_acceptance = 1.0 - np.searchsorted(np.sort(impostor), thresholds, "left") \
        / len(impostor)
    best = np.argmin(np.abs(false_rejection - false_acceptance))  # the first, on ties
    return (false_rejection[best] + false_acceptance[best]) / 2


class Algorithm:
    def setup(self, parameters):
        self.genuine, self.impostor = [], []
        return True

    def process(self, inputs, data_loaders, output):
        scores = inputs["scores"].data
        own = scores.models == scores.client
        self.genuine.extend(scores.values[own])
        self.impostor.extend(scores.values[~own])
        if not inputs.hasMoreData():
            output.write({"eer": equal_error_rate(np.array(self.genuine),
                                                  np.array(self.impostor)),
                          "genuine": len(self.genuine), "impostor": len(self.impostor)})
        return True
