"""``python -m papyflow``: the ``papyflow`` command (see :mod:`papyflow.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
