"""Write a new Alembic migration from the difference between the tables in code and the schema.

    .venv/bin/python tools/new_migration.py "add payouts"

It migrates a scratch SQLite database to head, then lets Alembic compare it with every domain's
tables (`coffer.server.all_metadata()`). Read what it wrote before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from coffer.db import Database, migrate
from coffer.db.migrate import alembic_config
from coffer.server import all_metadata


def main() -> None:
    message = " ".join(sys.argv[1:]) or "change"
    with tempfile.TemporaryDirectory() as scratch:
        database = Database.connect(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        migrate(database)
        config = alembic_config(database, target_metadata=all_metadata())
        versions = Path(config.get_main_option("script_location") or "") / "versions"
        number = len(list(versions.glob("[0-9][0-9][0-9][0-9]_*.py"))) + 1
        command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
        database.dispose()


if __name__ == "__main__":
    main()
