"""Before/after for the HTTP API, measured side by side: `coffer bench --http` alternating
between two source trees, round by round, on one database.

    git archive <before> src | tar -x -C /tmp/before        # the code as it was
    .venv/bin/python bench/ab_http.py --before /tmp/before/src --after src \\
        --workloads floor,packages,balance --rounds 5 --duration-s 5

Each round runs every workload against the "before" server, then the "after" one (the order
alternates each round, so neither always runs first on a warmer machine); the load generator
and the floor are the same for both. It prints medians of req/s and of server CPU per request,
and each side's ratio to the floor measured in the same round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from coffer.bench.http import HttpBenchOptions, run_http_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a source tree (its src/)")
    parser.add_argument("--after", type=Path, required=True, help="another source tree")
    parser.add_argument("--workloads", default="floor,packages,balance")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--out", type=Path, default=None, help="append every run (JSON lines)")
    parser.add_argument("--before-env", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--after-env", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    workloads = tuple(w for w in args.workloads.split(",") if w)
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{scratch}/ab.db"
        for round_ in range(args.rounds):
            sides = [
                ("before", args.before, args.before_env),
                ("after", args.after, args.after_env),
            ]
            for side, src, env in sides if round_ % 2 == 0 else sides[::-1]:
                options = HttpBenchOptions(
                    database_url=url,
                    workloads=workloads,
                    group_commit=(True,),
                    workers=args.workers,
                    clients=args.clients,
                    duration_s=args.duration_s,
                    results_path=args.out,
                    server_env={
                        "PYTHONPATH": str(src.resolve()),
                        **dict(item.split("=", 1) for item in env),
                    },
                )
                runs = run_http_bench(options).runs
                floor = next((r.requests_per_s for r in runs if r.workload == "floor"), 0.0)
                for run in runs:
                    ratio = run.requests_per_s / floor if floor else 0.0
                    key = (run.workload, side)
                    cpu = run.server_cpu_us_per_request
                    figures.setdefault(key, []).append((run.requests_per_s, cpu, ratio))
                    print(
                        f"round {round_} {side:6s} {run.workload:9s} {run.requests_per_s:8.0f}"
                        f" req/s {cpu:7.0f} us/req {ratio:5.2f}x floor errors {run.errors}",
                        flush=True,
                    )
    print("\nworkload  side    median req/s  median CPU us/req  median x floor")
    for (workload, side), rows in figures.items():
        rates, cpus, ratios = zip(*rows, strict=True)
        print(
            f"{workload:9s} {side:6s} {statistics.median(rates):12.0f}"
            f" {statistics.median(cpus):18.0f} {statistics.median(ratios):15.2f}"
        )


if __name__ == "__main__":
    main()
