"""NuMap basics: a parallel, lazy imap over processes or threads."""

import itertools
import time

from numap import NuMap


def slow_square(x, delay=0.01):
    time.sleep(delay)
    return x * x


if __name__ == "__main__":
    # One task: give func and iterable, and the NuMap starts itself.
    with NuMap(slow_square, range(8), worker_num=2) as squares:
        print("squares:", list(squares))

    # Constant arguments come after the item: slow_square(x, delay=0.05).
    with NuMap(slow_square, range(4), kwargs={"delay": 0.05}, worker_type="thread",
               worker_num=4) as squares:
        print("threads:", list(squares))

    # Results as they finish instead of in input order.
    with NuMap(slow_square, [5, 1, 4], worker_type="thread", worker_num=3,
               ordered=False) as squares:
        print("unordered:", sorted(squares))

    # Lazy: an endless input is pulled only as results are taken.
    with NuMap(abs, itertools.count(), worker_num=2, stride=64, buffer=256) as numbers:
        print("first five of an endless input:", list(itertools.islice(numbers, 5)))
