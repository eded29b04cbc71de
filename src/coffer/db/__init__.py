"""Storage: engines for SQLite and PostgreSQL, units of work, the writer, and migrations.

Who commits (STYLE habit 2), the one rule:
- **The edge owns the transaction.** A route, a CLI command or a background job opens it;
  services (`f(session, ...)`) and the ledger never commit.
- **Anything that writes the ledger commits through the writer** (`Writer.run` / `run_async`
  with a `ledger.Work`, or `Writer.call(fn)` for a service function that calls the ledger in
  its session). The writer takes the ledger's write lock (the chain head) first and commits many
  units in one batch, so no request holds that lock through a commit of its own, and the lock
  order is the same everywhere: chain head, then domain rows, then accounts in id order.
- **Everything else** (users, keys, a new payment order, the webhook inbox) commits in its own
  short `Database.unit_of_work()`; reads use `Database.read()` or `snapshot()` and never take the
  chain head.
- **No transaction is open across a network call** (a provider): `flows.py` modules orchestrate
  the steps around it, each step its own unit of work.
"""

from coffer.db.engine import Database, normalise_url
from coffer.db.migrate import migrate
from coffer.db.writer import Writer

__all__ = ["Database", "Writer", "migrate", "normalise_url"]
