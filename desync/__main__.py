"""``python -m desync``: the same entry point as the ``desync`` script."""

import sys

from desync.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
