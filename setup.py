"""Build the one compiled part: numap's shared-memory allocator for numpy arrays.

It is optional: where it cannot be built (no C compiler), numap copies large new
arrays into shared memory instead of allocating them there, and everything else
is the same. The project's metadata is in pyproject.toml.
"""

import numpy
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "numap._alloc", ["numap/_alloc.c"], include_dirs=[numpy.get_include()],
    extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    libraries=["rt"], optional=True,
)])
