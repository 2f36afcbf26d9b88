"""Run the ``cpms`` command as ``python -m cpms``."""

import sys

from cpms.cli import main

sys.exit(main())
