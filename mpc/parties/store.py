"""The SP's durable store: users' ciphertexts and computed results in SQLite.

One file in the data directory, WAL mode, one transaction per upload, so an
upload is all of a user's ciphertexts or none, and a crash or restart loses
nothing that was acknowledged. Ciphertexts are stored as one blob per record
(the fixed-width encodings back to back), with user id, kind, version, layout
version, count and time. The static recommendations an admin sets (public,
in the clear) live in their own table, replaced as a whole.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mpc.errors import ParameterError, ProtocolError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    user_id        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    layout_version INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    width          INTEGER NOT NULL,
    blob           BLOB    NOT NULL,
    created        REAL    NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE TABLE IF NOT EXISTS results (
    user_id        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    source_kind    TEXT    NOT NULL,
    source_version INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    width          INTEGER NOT NULL,
    blob           BLOB    NOT NULL,
    created        REAL    NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS static_recs (
    product     TEXT    NOT NULL,
    rank        INTEGER NOT NULL,
    recommended TEXT    NOT NULL,
    PRIMARY KEY (product, rank)
);
"""
STATIC_VERSION_KEY = "static:version"
FORMAT_KEY = "store:format"
FORMAT = "2"
"""2: every record's ciphertexts were proven by their uploader (upload proofs), under a
joint key on squares. A store of an earlier format is refused: its records came in
unproven, so delivering anything computed from them could decrypt for a user what
that user supplied (docs/security.md)."""


@dataclass(frozen=True)
class Record:
    """A stored batch of ciphertexts of one user and kind."""

    user_id: str
    kind: str
    version: int
    layout_version: int
    count: int
    width: int
    blob: bytes
    created: float


class Store:
    """SQLite-backed storage; safe to call from the event loop's executor threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        fmt = self.get_meta(FORMAT_KEY)
        if fmt is None:
            if self.count_records() or self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]:
                self._db.close()
                raise ParameterError(
                    f"{self.path} holds records of an earlier version, uploaded without proofs of "
                    "knowledge: move it away (with the servers stopped) and let the users upload again"
                )
            self.set_meta(FORMAT_KEY, FORMAT)
        elif fmt != FORMAT:
            self._db.close()
            raise ParameterError(f"{self.path} has store format {fmt!r}; this version reads {FORMAT!r}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- records -------------------------------------------------------------------
    def put_record(
        self,
        user_id: str,
        kind: str,
        layout_version: int,
        count: int,
        width: int,
        blob: bytes,
        results: dict[str, tuple[int, bytes]] | None = None,
    ) -> int:
        """Replace (user, kind) and its derived results in one transaction. Returns the version.

        Results derived from the old record are dropped; ``results`` maps a
        result kind to (count, blob) computed from the new record, stored in the
        same transaction, so nobody ever reads a result of another version.
        Results derived from the user's other kinds are kept.
        """
        if len(blob) != count * width:
            raise ProtocolError(f"record of {count} x {width} bytes carries {len(blob)} bytes")
        for rkind, (rcount, rblob) in (results or {}).items():
            if len(rblob) != rcount * width:
                raise ParameterError(f"result {rkind!r} does not match its count and width")
        now = time.time()
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                row = cur.execute(
                    "SELECT version FROM records WHERE user_id=? AND kind=?", (user_id, kind)
                ).fetchone()
                version = (row[0] if row else 0) + 1
                cur.execute(
                    "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?)",
                    (user_id, kind, version, layout_version, count, width, blob, now),
                )
                cur.execute("DELETE FROM results WHERE user_id=? AND source_kind=?", (user_id, kind))
                for rkind, (rcount, rblob) in (results or {}).items():
                    cur.execute(
                        "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?)",
                        (user_id, rkind, kind, version, rcount, width, rblob, now),
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return version

    def get_record(self, user_id: str, kind: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT user_id, kind, version, layout_version, count, width, blob, created "
                "FROM records WHERE user_id=? AND kind=?",
                (user_id, kind),
            ).fetchone()
        return Record(*row) if row else None

    def users(self, kind: str | None = None) -> list[str]:
        q = "SELECT DISTINCT user_id FROM records" + (" WHERE kind=?" if kind else "")
        with self._lock:
            rows = self._db.execute(q + " ORDER BY user_id", (kind,) if kind else ()).fetchall()
        return [r[0] for r in rows]

    def record_versions(self, kind: str) -> dict[str, tuple[int, int, int]]:
        """``user -> (version, layout_version, count)`` of every record of ``kind``, blobs unread."""
        with self._lock:
            rows = self._db.execute(
                "SELECT user_id, version, layout_version, count FROM records WHERE kind=? ORDER BY user_id",
                (kind,),
            ).fetchall()
        return {u: (int(v), int(lv), int(c)) for u, v, lv, c in rows}

    def count_records(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def fingerprint(self) -> list[tuple]:
        """(user, kind, version, count, blob length) of every record: to check nothing changed."""
        with self._lock:
            return self._db.execute(
                "SELECT user_id, kind, version, count, length(blob) FROM records ORDER BY 1, 2"
            ).fetchall()

    # -- results -------------------------------------------------------------------
    def put_result(
        self, user_id: str, kind: str, source_kind: str, source_version: int, count: int, width: int, blob: bytes
    ) -> bool:
        """Store a result computed later (for example precomputed in idle time).

        Stored only if the record it came from is still at ``source_version``:
        returns False (and stores nothing) when an upload replaced it meanwhile.
        """
        if len(blob) != count * width:
            raise ParameterError("result blob does not match its count and width")
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                row = cur.execute(
                    "SELECT version FROM records WHERE user_id=? AND kind=?", (user_id, source_kind)
                ).fetchone()
                if row is None or row[0] != source_version:
                    cur.execute("ROLLBACK")
                    return False
                cur.execute(
                    "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?)",
                    (user_id, kind, source_kind, source_version, count, width, blob, time.time()),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return True

    def get_result(self, user_id: str, kind: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT user_id, kind, source_version, 0, count, width, blob, created "
                "FROM results WHERE user_id=? AND kind=?",
                (user_id, kind),
            ).fetchone()
        return Record(*row) if row else None

    # -- meta ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    # -- static recommendations (public, set by an admin) ---------------------------
    def replace_static(self, entries: list[tuple[str, int, str]]) -> int:
        """Replace the whole table with ``(product, rank, recommended)`` rows, atomically.

        Returns the table's new version (1, 2, ...). A duplicate (product,
        rank) is a ParameterError and leaves the old table in place.
        """
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                row = cur.execute("SELECT value FROM meta WHERE key=?", (STATIC_VERSION_KEY,)).fetchone()
                version = int(row[0]) + 1 if row else 1
                cur.execute("DELETE FROM static_recs")
                cur.executemany("INSERT INTO static_recs VALUES (?,?,?)", entries)
                cur.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (STATIC_VERSION_KEY, str(version)))
                cur.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                cur.execute("ROLLBACK")
                raise ParameterError(f"static table refused: {exc}") from None
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return version

    def static_for(self, product: str) -> tuple[int, list[tuple[int, str]]]:
        """(table version, ``[(rank, recommended), ...]`` by rank) for ``product``; version 0: never set."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (STATIC_VERSION_KEY,)).fetchone()
            rows = self._db.execute(
                "SELECT rank, recommended FROM static_recs WHERE product=? ORDER BY rank", (product,)
            ).fetchall()
        return (int(row[0]) if row else 0), [(int(r), str(x)) for r, x in rows]
