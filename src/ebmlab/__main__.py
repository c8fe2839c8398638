"""``python -m ebmlab``: the command line."""

import sys

from ebmlab.cli import main

sys.exit(main())
