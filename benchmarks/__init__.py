"""Benchmarks of papyflow: NuMap side by side with the standard library and its peers.

Running
=======

From the repository root, in an environment with the ``bench`` extra
installed (``pip install -e '.[bench]'``)::

    python -m benchmarks numap                     # full suite, about 10 minutes on 2 cores
    python -m benchmarks numap --quick             # smoke test, under 2 minutes
    python -m benchmarks numap --only overhead,cpu # some scenarios only
    python -m benchmarks numap --repeat 5          # more repeats (default 3)
    python -m benchmarks numap --json benchmarks/results/numap.json
    python -m benchmarks numap --exclude pypeln.process,pypeln.thread
    python -m benchmarks pipelines                 # papyflow pipelines (see pipelines.py)
    python -m benchmarks formats                   # packing records (see formats.py)

Markdown goes to stdout (a machine line, then one table per scenario as soon
as it is measured); progress goes to stderr.  ``--json`` writes the raw runs;
``python -m benchmarks.report FILE`` (or :func:`benchmarks.report.to_markdown`)
turns such a file back into the same markdown, e.g. for the docs.

What is measured
================

Scenarios (``benchmarks/scenarios.py``), 2 worker processes unless noted:

``overhead``
    ``x + 1`` over an iterator of 100,000 ints: per-item cost.  Baseline:
    ``multiprocessing.Pool.imap`` at its best chunksize; also compared to joblib.
``cpu``
    400 pure-Python items of ~5 ms each (the loop is calibrated at start-up so
    one item takes ~5 ms serially).  Baseline: serial ``map`` (= speedup).
``sleep``
    400 ``time.sleep(0.01)`` items on 8 *threads*; % of the ideal 800 items/s.
``arrays``
    64 fresh 4 MiB float64 arrays, ``a + 1`` returned: MiB/s of input.
    Baseline: ``ProcessPoolExecutor.map``.
``slow-input``
    200 arrays as in ``arrays``, each made after ~0.5 ms of pure-Python work
    (a tenth of a ``cpu`` item), as a parser or a reader takes to make its
    items: whether a contender pulls its input while it sends what it has.
    Baseline: ``ProcessPoolExecutor.map``.
``memory``
    Peak RSS (measuring process, and it plus its workers) after consuming
    exactly N results of ``x + 1`` over ``itertools.count()``, N = 10,000 and
    1,000,000, and how many inputs each contender pulled beyond N.
    ``ProcessPoolExecutor.map`` never returns on an endless input; it is
    stopped after 60 s and reported as such.

Contenders (``benchmarks/contenders_*.py``, listed in ``registry.py``): serial
``map``; ``multiprocessing.Pool.imap`` at chunksize 1 and at its best
chunksize (1, 10, 100, 1000, 10000 tried on the first repeat);
``multiprocess.Pool.imap`` at chunksize 1000 and 1;
``ProcessPoolExecutor.map`` at chunksize 1 and best (``ThreadPoolExecutor``
for threads); joblib ``Parallel(return_as='generator')`` (loky, or threading);
mpire ``WorkerPool.imap`` with its default chunking; pypeln
``process.map``/``thread.map``; and NuMap with its defaults (only
``worker_type`` and ``worker_num`` are set).  A library that is not
installed is skipped with a note.

Method
======

* Every measurement runs in a fresh subprocess (``python -m benchmarks._one
  SCENARIO CONTENDER SIZE``) that prints one JSON line, so no contender's
  memory, threads or leftover processes can affect another, and peak RSS is
  per contender.  The subprocess runs in its own process group and has a
  timeout: on expiry the whole group is killed and the table says so.
  Processes a contender leaves behind after exit are killed and reported.
* Repeats are interleaved round robin across contenders (the start rotates
  each repeat), so drifts of the machine's speed hit all alike; the best
  repeat is reported, with the spread between best and worst.
* Time runs from pool creation to the last result (start-up included,
  library import and pool teardown excluded); results are checked for count,
  values and - for order-preserving contenders - order.
"""
