"""Storage: engines for SQLite and PostgreSQL, units of work, and migrations."""

from coffer.db.engine import Database, normalise_url
from coffer.db.migrate import migrate
from coffer.db.writer import Writer

__all__ = ["Database", "Writer", "migrate", "normalise_url"]
