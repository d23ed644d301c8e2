"""Two inputs at different rates, synchronized in one group, through the cache.

Run from the repository root::

    python examples/dataflow_demo.py

Six images belong to two clients (three each). Both streams are written to
the cache; a group reads them together, one step per image: the client
input moves on only when its unit ends. An output written once per step
(its units end where the steps end) is cached and read back.
"""

from __future__ import annotations

import os
import tempfile

from papyflow.dataflow.data import CachedDataSink, CachedDataSource
from papyflow.dataflow.inputs import Input, InputGroup
from papyflow.dataflow.outputs import Output, SynchronizationListener
from papyflow.formats.dataformat import DataFormat


def write(filename: str, text: DataFormat, units: list[tuple[str, int, int]]) -> None:
    sink = CachedDataSink()
    sink.setup(filename, text, units[0][1], units[-1][2])
    for data, start, end in units:
        sink.write({"text": data}, start, end)
    sink.close()  # commits: until now a reader would see the previous version, if any


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        text = DataFormat(cache, "system/text/1")  # a system format: no prefix needed
        write(os.path.join(cache, "images.data"), text,
              [(f"img{i}", i, i) for i in range(6)])
        write(os.path.join(cache, "clients.data"), text, [("c0", 0, 2), ("c1", 3, 5)])

        listener = SynchronizationListener()
        group = InputGroup("main", listener)
        for name in ("images", "clients"):
            source = CachedDataSource()
            source.setup(os.path.join(cache, f"{name}.data"), cache)
            group.add(Input(name, "system/text/1", source))

        sink = CachedDataSink()
        sink.setup(os.path.join(cache, "pairs.data"), text, 0, 5)
        pairs = Output("pairs", sink, listener)
        while group.hasMoreData():
            group.next()
            image, client = group["images"], group["clients"]
            kept = "kept" if client.data_same_as_previous else "new"
            print(f"step {group.data_index}..{group.data_index_end}: {image.data.text} "
                  f"with {client.data.text} ({kept})")
            pairs.write({"text": f"{client.data.text}/{image.data.text}"})  # ends with the step
        pairs.close()
        for input_ in group:
            input_.data_source.close()

        result = CachedDataSource()
        result.setup(os.path.join(cache, "pairs.data"), cache, start_index=2, end_index=4)
        print("pairs 2..4 read back:", [(d.text, s, e) for d, s, e in result])
        result.close()
        print("cache files of 'pairs':",
              sorted(f for f in os.listdir(cache) if f.startswith("pairs.")))


if __name__ == "__main__":
    main()
