"""The persistent verdict cache (SQLite): shared by processes, notebooks and reruns on one machine."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from medix_lib import models

def machine_cache_path() -> str:
    """The verdict cache every stage on this machine shares: keyed by backend, model, prompt hash and item, so sharing
    is safe, and a re-run (or a resumed evaluation) asks the judge only what it has not answered yet.
    ``MEDIX_JUDGE_CACHE`` points it elsewhere (a benchmark's cold cache, an isolated sweep)."""
    return os.environ.get("MEDIX_JUDGE_CACHE") or str(models.cache_dir() / "judge_cache.sqlite")


class VerdictCache:
    """Successful model verdicts on disk (SQLite, WAL): shared by processes and reruns. Keys hash the backend, the
    model identity, the prompt hash and the item, so changing any of them never reuses a stale verdict."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, p_yes REAL, label INTEGER, "
                       "judge TEXT, prompt_hash TEXT, backend TEXT, created REAL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer of another training process
        return db

    def get(self, keys: list[str]) -> dict[str, tuple[float | None, bool | None]]:
        found = {}
        db = self._connect()
        try:
            for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT key, p_yes, label FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})",
                                  chunk)
                found.update({k: (p, None if label is None else bool(label)) for k, p, label in rows})
        finally:
            db.close()
        return found

    def put(self, rows: dict[str, tuple[float | None, bool | None]], judge: str, prompt_hash: str,
            backend: str) -> None:
        now = time.time()
        db = self._connect()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(k, p, None if label is None else int(label), judge, prompt_hash, backend, now)
                                for k, (p, label) in rows.items()])
        finally:
            db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        finally:
            db.close()
