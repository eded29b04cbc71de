"""Run the README's table of figures: `coffer bench --json` once per configuration.

    .venv/bin/python bench/figures.py --postgres postgresql://postgres@127.0.0.1:5432/coffer_bench \
        --sqlite sqlite:////tmp/coffer-bench.db --out bench/results.jsonl

Each run's JSON object is appended to `--out` as it finishes (a line per run), together with
the machine's load average before and after, so a long session loses nothing if it stops
half-way. `--table` prints the Markdown table from such a file. The first run on each database
writes the preload; later runs on it start from that history (the table shows how much); the
holds run adds holds of its own. `--only WORKLOAD` runs one workload's configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

COFFER = str(Path(sys.executable).with_name("coffer"))
SECONDS = 10.0
ACCOUNTS = 10_000
CLIENT_COUNTS = (1, 4, 16, 64, 256)
RUN_TIMEOUT_S = 3_600
PRELOAD_HOLDS = 20_000


def configurations(
    postgres: str | None, sqlite: str | None, preload_pg: int, preload_sqlite: int
) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = []
    if postgres:
        for workload in ("uncontended", "hot"):
            for clients in CLIENT_COUNTS:
                first = not runs
                runs.append(
                    {
                        "url": postgres,
                        "workload": workload,
                        "clients": clients,
                        "preload": preload_pg if first else 0,
                    }
                )
        # Holds get a history of their own first: the planner must see a populated holds table
        # (ANALYZE follows the preload), or its plans for them are made for an empty one.
        runs.append({"url": postgres, "workload": "holds", "clients": 64, "preload": PRELOAD_HOLDS})
    if sqlite:
        normal = f"{sqlite}{'&' if '?' in sqlite else '?'}synchronous=NORMAL"
        for index, (url, clients) in enumerate(
            [(sqlite, 16), (sqlite, 64), (sqlite, 256), (normal, 16), (normal, 64), (normal, 256)]
        ):
            runs.append(
                {
                    "url": url,
                    "workload": "uncontended",
                    "clients": clients,
                    "preload": preload_sqlite if index == 0 else 0,
                }
            )
    return runs


def run(config: dict[str, object], *, seconds: float, accounts: int) -> dict[str, object]:
    command = [
        COFFER,
        "bench",
        "--database-url",
        str(config["url"]),
        "--workload",
        str(config["workload"]),
        "--clients",
        str(config["clients"]),
        "--seconds",
        str(seconds),
        "--accounts",
        str(accounts),
        "--preload",
        str(config["preload"]),
        "--json",
    ]
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"coffer bench printed nothing: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    result["exit_status"] = done.returncode
    result["load_before"] = round(load_before, 2)
    result["load_after"] = round(os.getloadavg()[0], 2)
    return result


def table(path: Path) -> str:
    header = (
        "| database | durability | workload | clients | history at start | transfers/s "
        "| p50 ms | p99 ms | mean batch | CPU µs/transfer | load | verified |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    )
    rows = [header]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows.append(
            f"| {r['database']} | {r['durability']} | {r['workload']} | {r['clients']} "
            f"| {r['history_transfers']:,} | {r['transfers_per_s']:,.0f} "
            f"| {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} "
            f"| {r['batch_size_mean']:.0f} | {r['cpu_us_per_transfer']:.0f} "
            f"| {r['load_before']:.1f}→{r['load_after']:.1f} "
            f"| {'yes' if r['verified'] else 'NO'} |"
        )
        if r["workload"] == "holds":
            for name, op in r["operations"].items():
                rows.append(
                    f"| | | ↳ {name} | | | {op['per_s']:,.0f} | {op['latency_p50_ms']:.1f} "
                    f"| {op['latency_p99_ms']:.1f} | | | | |"
                )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (its data is kept; use a scratch db)")
    parser.add_argument("--sqlite", help="a SQLite URL")
    parser.add_argument("--out", type=Path, default=Path("bench/results.jsonl"))
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--preload-postgres", type=int, default=1_000_000)
    parser.add_argument("--preload-sqlite", type=int, default=200_000)
    parser.add_argument("--table", action="store_true", help="print the table from --out")
    parser.add_argument("--only", help="run only this workload's configurations")
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
        return
    for config in configurations(
        args.postgres, args.sqlite, args.preload_postgres, args.preload_sqlite
    ):
        if args.only and config["workload"] != args.only:
            continue
        result = run(config, seconds=args.seconds, accounts=args.accounts)
        with args.out.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(
            f"{result['database']} {result['workload']} {result['clients']} clients: "
            f"{result['transfers_per_s']:,.0f}/s p99 {result['latency_p99_ms']:.1f} ms "
            f"verified={result['verified']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
