"""The app served by a real uvicorn on a free loopback port, for what the in-process TestClient
cannot show (keep-alive connections, the HTTP parser's own limits).

    with serve_live(api.coffer.app) as base_url, httpx.Client(base_url=base_url) as client:
        client.get("/api/v1/healthz")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 20.0


@contextmanager
def serve_live(app: FastAPI) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 for the duration; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:  # bounded: a server that never starts fails the test
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried `response`: two answers on one
    keep-alive connection share it."""
    stream = response.extensions["network_stream"]
    address = stream.get_extra_info("client_addr")
    return int(address[1])
