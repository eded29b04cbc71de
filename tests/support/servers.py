"""Real `coffer serve` processes on loopback, for tests that need more than one process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


@contextlib.contextmanager
def coffer_serve(
    database_url: str,
    *,
    jwt_secret: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Server]:
    """`coffer serve [--workers N]` on a free loopback port, stopped (and waited for) on exit;
    `env` adds or overrides environment variables (settings)."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    env = {
        **os.environ,
        "COFFER_DATABASE_URL": database_url,
        "COFFER_PORT": str(port),
        "COFFER_HOST": "127.0.0.1",
        "COFFER_JWT_SECRET": jwt_secret,
        "COFFER_RATE_LIMIT": "1000000/minute",
        "COFFER_LOG_LEVEL": "warning",
        **(env or {}),
    }
    coffer = Path(sys.executable).with_name("coffer")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(coffer), "serve", "--workers", str(workers)], env=env, stdout=out, stderr=out
        )
    server = Server(process, f"http://127.0.0.1:{port}/api/v1", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"coffer serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.base_url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"coffer serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
