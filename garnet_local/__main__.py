"""Entry point of `python -m garnet_local`."""

import sys

from garnet_local.cli import main

sys.exit(main())
