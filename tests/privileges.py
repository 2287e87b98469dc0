"""Running a step of a test as an unprivileged user, so that file modes
apply even when the suite runs as root."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


@contextlib.contextmanager
def as_nobody() -> Iterator[None]:
    """Set the effective user and group to nobody for the block when
    running as root; otherwise run the block as is."""
    if os.geteuid() != 0:
        yield
        return

    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """Yield a temporary folder that the nobody user can traverse (mode 0711), where
    pytest's own tmp_path, of mode 0700, would hide every file from the nobody user."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        folder.chmod(0o711)
        yield folder
