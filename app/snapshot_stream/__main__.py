"""``python -m snapshot_stream``."""

import sys

from .cli import main

sys.exit(main())
