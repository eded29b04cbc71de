"""A child process for the crash tests: stream transfers through a Batcher, and say which ones
the ledger acknowledged, each only after its future resolved.

    python -m tests.ledger.crash_writer DATABASE_URL '{"users": [...], "hot": 5, ...}'

Every request is decided by the seed alone (thread t, request i: key "c{t}-{i}"), so a second
run with the same seed asks for exactly the same transfers under the same keys. Output lines:
"ok KEY" (committed), "no KEY" (refused: insufficient funds), "err KEY REPR" (anything else),
and "done" at the end. The parent kills this process at some point with SIGKILL.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from concurrent.futures import Future

from coffer import ledger
from coffer.db import Database
from coffer.ledger import Transfer, TransferRequest

AMOUNT_MAX = 20
IN_FLIGHT_MAX = 8  # per thread: futures submitted and not yet resolved


def requests(config: dict[str, object], thread: int) -> list[tuple[str, TransferRequest]]:
    users = list(config["users"])  # type: ignore[call-overload]
    hot = int(config["hot"])  # type: ignore[call-overload]
    rng = random.Random(f"{config['seed']}-{thread}")
    made = []
    for i in range(int(config["per_thread"])):  # type: ignore[call-overload]
        key = f"c{thread}-{i}"
        user, amount = rng.choice(users), rng.randint(1, AMOUNT_MAX)
        if rng.random() < 0.55:
            made.append((key, TransferRequest(user, hot, amount, "fee", {"i": i}, key)))
        else:
            made.append((key, TransferRequest(hot, user, amount, "bonus", {"i": i}, key)))
    return made


def main() -> None:
    url, config = sys.argv[1], json.loads(sys.argv[2])
    database = Database.connect(url)
    say_lock = threading.Lock()

    def say(line: str) -> None:
        with say_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def settle(key: str, future: Future[list[Transfer]]) -> None:
        exc = future.exception()
        if exc is None:
            say(f"ok {key}")
        elif isinstance(exc, ledger.InsufficientFunds):
            say(f"no {key}")
        else:
            say(f"err {key} {exc!r}")

    with ledger.Batcher(database.writer, name="crash-writer") as batcher:

        def stream(thread: int) -> None:
            window = threading.Semaphore(IN_FLIGHT_MAX)
            for key, request in requests(config, thread):
                window.acquire()
                future = batcher.submit([request])

                def done(f: Future[list[Transfer]], key: str = key) -> None:
                    settle(key, f)
                    window.release()

                future.add_done_callback(done)

        threads = [
            threading.Thread(target=stream, args=(t,)) for t in range(int(config["threads"]))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    say("done")


if __name__ == "__main__":
    main()
