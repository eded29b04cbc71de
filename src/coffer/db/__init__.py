"""Storage: engines for SQLite and PostgreSQL, units of work, and migrations."""

from coffer.db.engine import Database, normalise_url
from coffer.db.migrate import migrate

__all__ = ["Database", "migrate", "normalise_url"]
