"""``python -m whybox``: the same command as the ``whybox`` console script."""

import sys

from whybox.cli import main

if __name__ == "__main__":
    sys.exit(main())
