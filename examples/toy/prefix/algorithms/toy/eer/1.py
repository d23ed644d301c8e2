"""The equal error rate: where the false acceptance and false rejection rates meet.

A genuine score compares a probe with its own client's model, an impostor
score with another client's. The scores are gathered step by step; at the
last step the rate is computed over every threshold (the scores themselves)
and written once.
"""

import numpy as np


def equal_error_rate(genuine, impostor):
    best = (2.0, 1.0)
    for threshold in np.concatenate([genuine, impostor]):
        false_rejection = np.mean(genuine < threshold)
        false_acceptance = np.mean(impostor >= threshold)
        gap = abs(false_rejection - false_acceptance)
        if gap < best[0]:
            best = (gap, (false_rejection + false_acceptance) / 2)
    return best[1]


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
