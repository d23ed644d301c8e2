"""papyflow: parallel data-processing pipelines in plain Python.

The pipeline layer (Worker, Piper, Dagger, Plumber) is built on :mod:`numap`,
the lazy, buffered, multi-task parallel map that ships with it.
"""

__version__ = "0.1.0"
