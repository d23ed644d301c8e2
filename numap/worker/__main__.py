"""``python -m numap.worker``: the same as the ``numap-worker`` command."""

import sys

from ._cli import main

sys.exit(main())
