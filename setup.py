"""Build the three compiled parts: numap's shared-memory allocator for numpy arrays,
numap's copy of large buffers with streaming stores, and the data logger's writer
of a batch of small files without the GIL.

All are optional: where they cannot be built (no C compiler), numap copies large
new arrays into shared memory instead of allocating them there, and copies with
numpy, and the data logger's savers write their files from Python; everything else
is the same. The project's metadata is in pyproject.toml.
"""

import numpy
from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(ext_modules=[
    Extension("numap._alloc", ["numap/_alloc.c"], include_dirs=[numpy.get_include()],
              extra_compile_args=FLAGS, libraries=["rt"], optional=True),
    Extension("numap._stream", ["numap/_stream.c"], extra_compile_args=FLAGS, optional=True),
    Extension("papyflow.datalogger._files", ["papyflow/datalogger/_files.c"],
              extra_compile_args=FLAGS, optional=True),
])
