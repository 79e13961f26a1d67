"""A ground database opened read-only, what its schema holds, and the base of every view's reader.

A reader opens the file read-only (SQLite's ``mode=ro``): it never creates, migrates or locks
the station's database, so it runs beside the listener (WAL lets it read while the listener
writes) and on what an older ground station left in the field: a column an older schema lacks
reads as NULL (`column`), a table it lacks as empty (`one`, `rows`). A missing file, a
database of some other program or a newer schema is a StoreError saying so.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .schema import StoreError, check_schema


class Tables:
    """One read-only connection (`db`) to a ground database of schema `version`, and the columns
    each of its tables has, as this file's schema has them."""

    def __init__(self, db: sqlite3.Connection, version: int, columns: dict[str, set[str]]) -> None:
        self.db = db
        self.version = version
        self._columns = columns  # table -> its columns

    @classmethod
    def open(cls, path: str | Path) -> Tables:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no ground database at {path} (start `listen --db {path}` first)")
        try:
            db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {path}: {e}") from e
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            check_schema(path, version, tables)
            columns = {t: {r[1] for r in db.execute("SELECT * FROM pragma_table_info(?)", (t,))} for t in tables}
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            db.close()
            raise StoreError(f"{path}: {e}") from e
        except StoreError:
            db.close()
            raise
        db.row_factory = sqlite3.Row
        return cls(db, version, columns)

    @property
    def empty(self) -> bool:
        """No schema yet: a file made, but never by a ground station."""
        return not self._columns

    def has(self, table: str) -> bool:
        return table in self._columns

    def has_column(self, table: str, column: str) -> bool:
        return column in self._columns.get(table, ())

    def column(self, table: str, column: str) -> str:
        """`column`, or NULL where this file's schema is older than the column."""
        return column if self.has_column(table, column) else "NULL"

    def one(self, table: str, sql: str, args: tuple = (), default=None):
        """The first value of a one-row query on `table`; `default` where the table is not there."""
        if not self.has(table):
            return default
        row = self.db.execute(sql, args).fetchone()
        return default if row is None or row[0] is None else row[0]

    def rows(self, table: str, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall() if self.has(table) else []


class View:
    """The reader of one view (`GroundReader.track`, ...): its `Tables`, and for the views of the
    flight's own rows the `FlightReader` that says which rows are the flight's (flight.py)."""

    def __init__(self, tables: Tables, flight=None) -> None:
        self._t, self._flight = tables, flight
