"""Synchronized dataflow: data units, sources and sinks, inputs, outputs, loaders.

A *data unit* ``(data, start, end)`` is a record covering the data indices
``start..end``. The modules, in the order data meets them:

* :mod:`papyflow.dataflow.data`: sources and sinks of units, the binary cache
  on disk (data, index and checksum files), ``mixDataIndices``;
* :mod:`papyflow.dataflow.inputs`: inputs in synchronization groups, which
  move one step of the mixed indices at a time;
* :mod:`papyflow.dataflow.outputs`: outputs, whose units end where the
  group's step ends;
* :mod:`papyflow.dataflow.data_loaders`: random access to a group's steps;
* :mod:`papyflow.dataflow.stats`: bytes and units read and written;
* :mod:`papyflow.dataflow.units`: the same synchronization for Pipers fed by
  streams of units;
* :mod:`papyflow.dataflow.errors`: the exceptions of the cache.

``docs/dataflow.md`` explains units, groups and the cache format.
"""
