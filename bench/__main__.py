"""Run every benchmark, print the table and write bench/results.json."""

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.capacity import run_capacity
from bench.common import REPO, median, progress
from bench.fleet import RATE_WINDOW_SECONDS, simulate
from bench.heartbeats import run_heartbeats
from bench.startup import run_startup

RESULTS_PATH = REPO / "bench" / "results.json"

# Each figure's goal: a description and the test it must pass, or None for a
# figure that is only reported.
GOALS: dict[str, tuple[str, Callable[[float], bool] | None]] = {
    "import_floor_s": ("baseline", None),
    "import_floor_rss_mb": ("baseline", None),
    "ready_stored_ratio": ("<= 1.15", lambda value: value <= 1.15),
    "ready_register_ratio": ("<= 1.25", lambda value: value <= 1.25),
    "rss_ratio": ("<= 1.10", lambda value: value <= 1.10),
    "rss_growth_mb": ("<= 1", lambda value: value <= 1.0),
    "heartbeat_cpu_ratio": ("<= 1.2", lambda value: value <= 1.2),
    "fleet_peak_to_mean": ("<= 1.5", lambda value: value <= 1.5),
    "fleet_recovery_s": ("report", None),
    "local_api_registrations_per_s": ("report", None),
}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark jibrild against its floor."
    )
    parser.add_argument(
        "--startup-rounds", type=int, default=11, help="start-up pairs (default 11)"
    )
    parser.add_argument(
        "--heartbeat-rounds",
        type=int,
        default=3,
        help="heartbeat runs, each a bare loop and a daemon (default 3)",
    )
    parser.add_argument(
        "--long-beats",
        type=int,
        default=100_000,
        help="heartbeats of each daemon run, for the memory growth (default 100000)",
    )
    parser.add_argument(
        "--agents", type=int, default=10_000, help="simulated agents (default 10000)"
    )
    parser.add_argument(
        "--outage", type=float, default=300.0, help="simulated outage in seconds"
    )
    parser.add_argument(
        "--fleet-runs", type=int, default=3, help="fleet simulations (default 3)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_PATH, help="the results JSON file"
    )
    return parser.parse_args()


def run_fleet(agents: int, outage: float, runs: int) -> dict[str, float]:
    """Simulate the fleet ``runs`` times with different random seeds."""
    print(
        f"  SIMULATION in virtual time, not {agents} processes: each agent is "
        "jibrild's Registrar and Backoff on a fake clock; the API is down for "
        f"{outage:g} s, then answers every registration at once (its capacity "
        f"is assumed unlimited); rates are counted per {RATE_WINDOW_SECONDS:g} s.",
        flush=True,
    )
    results = []
    for seed in range(1, runs + 1):
        result = simulate(agents, outage, seed)
        results.append(result)
        progress(
            f"run {seed}/{runs}: recovery {result.recovery_s:.0f} s, peak "
            f"{result.peak_per_s:.0f}/s over a mean of {result.mean_per_s:.0f}/s, "
            f"{result.attempts} attempts"
        )
    return {
        "fleet_peak_to_mean": median(result.peak_to_mean for result in results),
        "fleet_recovery_s": median(result.recovery_s for result in results),
    }


def format_table(results: dict[str, float]) -> str:
    """Return the results as a Markdown table with goal and pass or miss."""
    lines = ["| figure | value | goal | result |", "| --- | ---: | --- | --- |"]
    for key, (goal, check) in GOALS.items():
        value = results[key]
        if check is None:
            verdict = "-"
        elif check(value):
            verdict = "pass"
        else:
            verdict = "MISS"
        lines.append(f"| `{key}` | {value:.3f} | {goal} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    """Run the benchmarks in turn; exit 1 when a goal is missed."""
    options = _options()
    results: dict[str, float] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jibrild-bench-") as folder:
        work = Path(folder)
        stages: list[tuple[str, Callable[[], dict[str, float]]]] = [
            (
                "start-up: import floor and READY=1",
                lambda: run_startup(work / "startup", options.startup_rounds),
            ),
            (
                "heartbeats: memory and CPU time",
                lambda: run_heartbeats(
                    work / "heartbeats", options.heartbeat_rounds, options.long_beats
                ),
            ),
            (
                "fleet: registration after an outage",
                lambda: run_fleet(options.agents, options.outage, options.fleet_runs),
            ),
            (
                "local API: registrations per second",
                lambda: run_capacity(work / "capacity", 3),
            ),
        ]
        for title, stage in stages:
            print(f"{title} ({time.monotonic() - started:.0f} s so far)", flush=True)
            results.update(stage())

    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\ndone in {time.monotonic() - started:.0f} s; wrote {options.output}\n")
    print(format_table(results))
    missed = [
        key for key, (_, check) in GOALS.items() if check and not check(results[key])
    ]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
