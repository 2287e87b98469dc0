"""Shared test set-up: the checkout root on sys.path, so garnet_local imports."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
