"""NuMap on any concurrent.futures.Executor: a thread pool, a process pool, a dask cluster.

NuMap submits one future per batch and keeps its own window, order, timeouts
and chaining on top. The executor stays yours: NuMap never shuts it down.
The dask part runs when dask.distributed is installed (pip install 'papyflow[dask]').
"""

import itertools
import math
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from numap import NuMap


def digits(n):
    """How many decimal digits n! has (a little pure-Python work per item)."""
    return len(str(math.factorial(n)))


def main():
    with ThreadPoolExecutor(max_workers=4) as pool:
        # worker_num defaults to the pool's max_workers.
        with NuMap(digits, range(10), executor=pool) as results:
            print("thread pool:", list(results))

    with ProcessPoolExecutor(max_workers=2) as pool:
        # Two tasks share the NuMap; the second is chained on the first.
        numap = NuMap(executor=pool)
        sizes = numap.add_task(digits, range(100, 105))
        evens = numap.add_task(lambda d: d % 2 == 0, sizes)  # lambdas travel too
        numap.start()
        print("process pool, chained:", list(evens))
        numap.stop()
        # An endless input, read lazily: only a bounded window is ever submitted.
        with NuMap(abs, itertools.count(), executor=pool, stride=64, buffer=256) as endless:
            print("first five of an endless input:", list(itertools.islice(endless, 5)))

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("dask: not installed, skipped")
        return
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    try:
        # A dask executor does not tell its size: say how many batches run at once.
        workers = sum(client.nthreads().values())
        with NuMap(digits, range(1000, 1005), executor=client.get_executor(),
                   worker_num=workers) as results:
            print("dask:", list(results))
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
