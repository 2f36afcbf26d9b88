"""``python -m simulator``: the same as ``cpms simulate``."""

import sys

from simulator.cli import main

sys.exit(main())
