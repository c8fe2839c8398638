"""``python -m ebmlab.cli``: the ``ebmlab`` command."""

import sys

from ebmlab.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
