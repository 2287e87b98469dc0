"""Run the daemon exactly as `jibrild run` does, except that the heartbeat
interval is the first argument, which may be below the 1-second minimum the
settings enforce. Only the benchmark uses it, to reach 100,000 heartbeats in
minutes: `python -m bench.fast_daemon SECONDS [jibrild run options]`."""

import asyncio
import dataclasses
import os
import signal
import sys

# As the entry point does: a SIGHUP during the imports must not kill us.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from jibrild import cli  # noqa: E402
from jibrild.daemon import Daemon  # noqa: E402
from jibrild.reload import SettingsReloader  # noqa: E402
from jibrild.settings import options_from_args  # noqa: E402


def main(argv: list[str]) -> int:
    """Load the settings, override the heartbeat interval, run the daemon."""
    interval = float(argv[0])
    args = cli._parse(["run", *argv[1:]])
    loaded = cli._load(args)
    # model_copy does not validate, which is how the interval gets past the
    # minimum. The daemon reads it from here at every heartbeat.
    settings = loaded.settings.model_copy(update={"heartbeat_interval": interval})
    loaded = dataclasses.replace(loaded, settings=settings)
    reloader = SettingsReloader(
        options_from_args(args), dict(os.environ), args.config, args.env_file
    )
    return asyncio.run(Daemon(loaded, reloader).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
