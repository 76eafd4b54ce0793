"""``python -m coursekit.grader ...`` is ``python -m coursekit grade ...`` (exercises part)."""

import sys

from coursekit.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["grade", *sys.argv[1:]]))
