"""Write an Alembic migration from the difference between the tables in code and the schema.

    .venv/bin/python tools/new_migration.py "add payouts"     # a new migration after the last
    .venv/bin/python tools/new_migration.py --initial          # rewrite 0001 from scratch

It migrates a scratch SQLite database to head, then lets Alembic compare it with every domain's
tables (`coffer.server.all_metadata()`). `--initial` is for before the first release only: it
rewrites 0001_initial.py from all tables and adds the ledger's chain-head row. Read what it
wrote before committing it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from coffer.db import Database, migrate
from coffer.db.migrate import MIGRATIONS_DIR, alembic_config
from coffer.server import all_metadata

VERSIONS = MIGRATIONS_DIR / "versions"
INITIAL = VERSIONS / "0001_initial.py"
CHAIN_ROW = """    # ### end Alembic commands ###
    # The ledger's chain head: one row, taken by every ledger writer (ledger/tables.py).
    chain = sa.table(
        "ledger_chain",
        sa.column("id", sa.SmallInteger()),
        sa.column("last_transfer_id", sa.BigInteger()),
        sa.column("last_hash", sa.LargeBinary()),
    )
    op.bulk_insert(chain, [{"id": 1, "last_transfer_id": 0, "last_hash": bytes(32)}])
"""


def main() -> None:
    initial = "--initial" in sys.argv[1:]
    message = " ".join(a for a in sys.argv[1:] if a != "--initial") or "change"
    if initial:
        if len(list(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))) > 1:
            sys.exit("--initial rewrites 0001 only while it is the only migration")
        INITIAL.unlink(missing_ok=True)
        message = "initial"
    with tempfile.TemporaryDirectory() as scratch:
        database = Database.connect(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        migrate(database)
        config = alembic_config(database, target_metadata=all_metadata())
        number = len(list(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))) + 1
        command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
        database.dispose()
    if initial:
        text = INITIAL.read_text()
        marker = "    # ### end Alembic commands ###\n"
        head, _, tail = text.partition(marker)
        INITIAL.write_text(head + CHAIN_ROW + tail)
    ruff = Path(sys.executable).with_name("ruff")
    written = sorted(VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))[-1]
    subprocess.run(
        [str(ruff), "check", "--quiet", "--fix", "--select", "I", str(written)], check=False
    )
    subprocess.run([str(ruff), "format", "--quiet", str(written)], check=False)


if __name__ == "__main__":
    main()
