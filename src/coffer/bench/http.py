"""`coffer bench --http`: the HTTP API over loopback, against a real `coffer serve`.

For each workload (and, for those that move money, with group commit on and off) it starts
`coffer serve --workers N` on a free loopback port against the given database, has a separate
process (`coffer.bench.http_client`, its own GIL) create and fund the users untimed, then drive
the server with `clients` keep-alive connections for `duration_s` (or `requests_max`
operations). Meanwhile it reads the CPU time of the serve processes and of the database's
backends (PostgreSQL; SQLite runs inside the server) from /proc. Then it stops the server and
proves the books with `verify_books`. The floor, a bare FastAPI app with one `async def` route
(`coffer.bench.floor`), is served by uvicorn with the same workers and driven the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from coffer import auth
from coffer.audit.verify import verify_books
from coffer.db import Database, migrate
from coffer.kit.clock import utc_now

HTTP_WORKLOADS = ("balance", "topup", "gift", "gift-hot", "packages", "floor")
DEFAULT_WORKLOADS = ("floor", "balance", "topup", "gift", "gift-hot")
MONEY_WORKLOADS = ("topup", "gift", "gift-hot")
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
SETUP_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1
TOKEN_TTL_S = 24 * 3600
# The server's per-principal limit is raised so the bench measures the limiter's cost, not
# its refusals (a few users make thousands of requests a second).
BENCH_RATE_LIMIT = "1000000/second"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class HttpBenchOptions:
    database_url: str
    workloads: Sequence[str] = DEFAULT_WORKLOADS
    group_commit: Sequence[bool] = (True, False)
    workers: int = 1
    clients: int = 64
    duration_s: float = 10.0
    requests_max: int = 10_000_000
    users: int = 100
    results_path: Path | None = None
    # Extra environment for the server (e.g. a profiler switch); never printed.
    server_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert all(w in HTTP_WORKLOADS for w in self.workloads), self.workloads
        assert 1 <= self.workers <= 64 and 1 <= self.clients <= 4_096
        assert 0 < self.duration_s <= 3_600 and self.requests_max >= 1
        assert 2 <= self.users <= 100_000


@dataclass(frozen=True, slots=True)
class HttpRun:
    """One row of the table: a workload against one server configuration."""

    workload: str
    group_commit: bool | None  # None: the workload moves no money (or is the floor)
    database: str  # the dialect only: a URL may carry credentials
    workers: int
    clients: int
    duration_s: float
    ops: int
    requests: int
    ops_per_s: float
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int
    error_samples: list[str]
    setup_errors: int
    connections: int  # opened by the load generator in the window: keep-alive makes `clients`
    server_cpu_us_per_request: float
    verified: bool | None  # None for the floor: it has no books
    load_before: float
    load_after: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("ops_per_s", "requests_per_s", "server_cpu_us_per_request"):
            data[key] = round(data[key], 1)
        for key in ("latency_p50_ms", "latency_p99_ms"):
            data[key] = round(data[key], 2)
        return {"kind": "http", **data}


@dataclass(slots=True)
class HttpBenchResult:
    runs: list[HttpRun]

    @property
    def ok(self) -> bool:
        return all(run.verified is not False for run in self.runs)

    def print_table(self, console: Console | None = None) -> None:
        console = console or Console()
        floor = next((r.requests_per_s for r in self.runs if r.workload == "floor"), None)
        first = self.runs[0] if self.runs else None
        title = "coffer bench --http"
        if first is not None:
            title += f" on {first.database}, {first.workers} worker(s), {first.clients} clients"
        table = Table(title=title)
        for name in ("workload", "group commit", "req/s", "ops/s", "vs floor", "p50 ms"):
            table.add_column(name, justify="left" if name in ("workload",) else "right")
        for name in ("p99 ms", "CPU µs/req", "errors", "books verified"):
            table.add_column(name, justify="right")
        for run in self.runs:
            ratio = f"{run.requests_per_s / floor:.2f}x" if floor else "-"
            table.add_row(
                run.workload,
                {None: "-", True: "on", False: "off"}[run.group_commit],
                f"{run.requests_per_s:,.0f}",
                f"{run.ops_per_s:,.0f}",
                ratio,
                f"{run.latency_p50_ms:.1f}",
                f"{run.latency_p99_ms:.1f}",
                f"{run.server_cpu_us_per_request:,.0f}",
                str(run.errors),
                {None: "-", True: "yes", False: "NO"}[run.verified],
            )
        console.print(table)
        for run in self.runs:
            for sample in run.error_samples[:1]:
                console.print(f"  {run.workload}: {sample}", markup=False, highlight=False)


def run_http_bench(options: HttpBenchOptions, *, progress: bool = False) -> HttpBenchResult:
    """Run every configuration; append each row to `results_path` as it comes.

    One server per configuration (the floor; Coffer with group commit on; off), each workload
    on it in turn with users of its own.
    """
    servers: list[tuple[str, bool | None, list[str]]] = []
    if "floor" in options.workloads:
        servers.append(("floor", None, ["floor"]))
    for commit in options.group_commit:
        names = [
            w
            for w in options.workloads
            if w != "floor" and (w in MONEY_WORKLOADS or commit is options.group_commit[0])
        ]
        if any(w in MONEY_WORKLOADS for w in names) or commit is options.group_commit[0]:
            servers.append(("coffer", commit, names))
    total = sum(len(names) for _, _, names in servers)
    runs: list[HttpRun] = []
    secret = secrets.token_urlsafe(48)
    database = Database.connect(options.database_url)
    try:
        migrate(database)
        with database.unit_of_work() as session:
            made = auth.create_api_key(session, role="service", label="coffer bench --http")
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("coffer bench --http", total=total)
            for kind, group_commit, names in servers:
                if not names:
                    continue
                with (
                    tempfile.TemporaryFile("w+") as log,
                    _server(options, kind, group_commit, secret, log) as (server, port),
                ):
                    for workload in names:
                        money = workload in MONEY_WORKLOADS
                        on = "on" if group_commit else "off"
                        switch = f" (group commit {on})" if money else ""
                        bar.update(task, description=f"{workload}{switch}")
                        run = _run_one(
                            options,
                            database,
                            workload,
                            group_commit if money else None,
                            (server, port, log),
                            made.key,
                            secret,
                        )
                        runs.append(run)
                        _append(options.results_path, run)
                        bar.advance(task)
        with database.unit_of_work() as session:
            auth.revoke_api_key(session, made.record.id)
    finally:
        database.dispose()
    order = {name: index for index, name in enumerate(options.workloads)}
    runs.sort(key=lambda run: (order[run.workload], run.group_commit is False))
    return HttpBenchResult(runs)


def _append(path: Path | None, run: HttpRun) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({**run.as_dict(), "at": utc_now().isoformat()}) + "\n")


def _run_one(
    options: HttpBenchOptions,
    database: Database,
    workload: str,
    group_commit: bool | None,
    serving: tuple[subprocess.Popen[bytes], int, IO[str]],
    service_key: str,
    jwt_secret: str,
) -> HttpRun:
    server, port, log = serving
    tag = secrets.token_hex(4)
    users = [f"bench-{tag}-{index:05d}" for index in range(options.users)]
    host_user = f"bench-{tag}-host" if workload == "gift-hot" else ""
    tokens = {
        user: auth.mint_user_token(jwt_secret, user_id=user, ttl_s=TOKEN_TTL_S, now=utc_now()).token
        for user in users
    }
    load_before = os.getloadavg()[0]
    plan = {
        "host": HOST,
        "port": port,
        "workload": workload,
        "clients": options.clients,
        "duration_s": options.duration_s,
        "requests_max": options.requests_max,
        "users": users if workload != "floor" else [],
        "tokens": tokens if workload != "floor" else {},
        "service_key": service_key if workload != "floor" else "",
        "host_user": host_user,
    }
    client = subprocess.Popen(
        [sys.executable, "-m", "coffer.bench.http_client"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(json.dumps(plan) + "\n")
        client.stdin.flush()
        ready = json.loads(client.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"the load generator did not start:\n{_tail(log)}")
        backends = _backend_pids(database)
        cpu_before = _cpu_s(server.pid, backends)
        client.stdin.write("go\n")
        client.stdin.flush()
        line = client.stdout.readline()
        cpu_after = _cpu_s(server.pid, backends | _backend_pids(database))
        if not line:
            raise RuntimeError(f"the load generator stopped:\n{_tail(log)}")
        figures = json.loads(line)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait()
    verified = None if workload == "floor" else verify_books(database).ok
    # A failed operation made at least one request: the server's CPU was spent on it too.
    requests = max(1, int(figures["requests"]) + int(figures["errors"]))
    return HttpRun(
        workload=workload,
        group_commit=group_commit,
        database=database.dialect,
        workers=options.workers,
        clients=options.clients,
        duration_s=options.duration_s,
        ops=figures["ops"],
        requests=figures["requests"],
        ops_per_s=figures["ops_per_s"],
        requests_per_s=figures["requests_per_s"],
        latency_p50_ms=figures["latency_p50_ms"],
        latency_p99_ms=figures["latency_p99_ms"],
        errors=figures["errors"],
        error_samples=figures["error_samples"],
        setup_errors=ready.get("setup_errors", 0),
        connections=figures["connections"],
        server_cpu_us_per_request=(cpu_after - cpu_before) * 1e6 / requests,
        verified=verified,
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
    )


@contextlib.contextmanager
def _server(
    options: HttpBenchOptions,
    kind: str,
    group_commit: bool | None,
    jwt_secret: str,
    log: IO[str],
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`coffer serve` (or the floor under uvicorn) on a free port, answering; stopped after."""
    port = _free_port()
    env = {
        **os.environ,
        "COFFER_JWT_SECRET": jwt_secret,
        "COFFER_MOCK_WEBHOOK_SECRET": secrets.token_hex(32),
        "COFFER_RATE_LIMIT": BENCH_RATE_LIMIT,
        "COFFER_LOG_LEVEL": "warning",
        "COFFER_GROUP_COMMIT": "false" if group_commit is False else "true",
        **options.server_env,
    }
    # In the environment, not on the command line, where `ps` would show its password.
    env["COFFER_DATABASE_URL"] = options.database_url
    workers = ["--workers", str(options.workers)]
    if kind == "floor":
        app = "coffer.bench.floor:app"
        command = ["-m", "uvicorn", app, "--host", HOST, "--port", str(port), *workers]
        command += ["--no-access-log", "--log-level", "warning"]
        health = "/floor"
    else:
        command = ["-m", "coffer.cli", "serve", "--host", HOST, "--port", str(port), *workers]
        health = "/healthz"
    server = subprocess.Popen(  # noqa: S603 - this interpreter, arguments made here
        [sys.executable, *command], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        _wait_until_up(server, port, health, log)
        yield server, port
    finally:
        _stop(server)


def _wait_until_up(server: subprocess.Popen[bytes], port: int, path: str, log: IO[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{HOST}:{port}{path}", timeout=1.0).status_code == 200:
                return
        time.sleep(POLL_S)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S:.0f} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _tail(log: IO[str], size: int = 3_000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-size:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it (uvicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _cpu_s(server_pid: int, backends: set[int]) -> float:
    """User + system CPU seconds of the server's processes and the database's backends."""
    total = 0
    for pid in _descendants(server_pid) | backends:
        stat = _stat(pid)
        if stat is not None:
            total += int(stat[11]) + int(stat[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def _backend_pids(database: Database) -> set[int]:
    """The PostgreSQL backends serving this database (other databases' are not ours)."""
    if database.dialect != "postgresql":
        return set()
    with database.read() as session:
        rows = session.execute(
            text(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return {int(row[0]) for row in rows}
