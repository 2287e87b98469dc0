"""Allow ``python -m jibrild``."""

import sys

from jibrild.entry import main

sys.exit(main())
