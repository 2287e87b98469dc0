"""Allow ``python -m jibrild``."""

import sys

from jibrild.cli import main

sys.exit(main())
