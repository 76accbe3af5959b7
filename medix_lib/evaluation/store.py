"""The results store: one row per (model, task, item) for the response and one per (model, task, item, judge, round)
for the verdict, in SQLite, each written in its own committed transaction as the run goes.

Kill the process at any point and run the same command again: finished responses and successful verdicts are not
redone (primary keys make a second write of the same row impossible), judge failures are retried, generation resumes
at the first item without a response. Every number of a report is recomputed from these rows.

A response keeps its row's question type (``task_type``: open, mcq, yes_no, report), ``modality`` and question
``family`` (where the row's loader says one), so a report can break accuracy down by them. A store written before
they were kept gains the columns when opened (its rows read None until :meth:`ResultsStore.fill_item_info` fills them
from the task's rows; answers are never touched).

An image task asked again with its picture replaced (:mod:`~medix_lib.evaluation.image_control`) is stored as the
task ``<task>@<control>``: its rows never mix with the task's own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    name TEXT PRIMARY KEY, settings TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS responses (
    model TEXT, task TEXT, item TEXT, prompt TEXT, reference TEXT, choices TEXT, response TEXT, answer TEXT,
    created REAL, task_type TEXT, modality TEXT, family TEXT, PRIMARY KEY (model, task, item));
CREATE TABLE IF NOT EXISTS verdicts (
    model TEXT, task TEXT, item TEXT, judge TEXT, prompt_hash TEXT, round INTEGER,
    label INTEGER, p_yes REAL, score REAL, error TEXT, rule TEXT, created REAL,
    PRIMARY KEY (model, task, item, judge, prompt_hash, round));
CREATE TABLE IF NOT EXISTS skipped (
    model TEXT, task TEXT, reason TEXT, PRIMARY KEY (model, task));
"""
# responses' columns added since the first stores were written: ALTER TABLE gives old files them (NULL in old rows)
_ADDED_RESPONSE_COLUMNS = {"task_type": "TEXT", "modality": "TEXT", "family": "TEXT"}
_ITEM_INFO = ("task_type", "modality", "family")  # a response's row info, filled in later where it was not kept
_RESPONSE_COLUMNS = ("model", "task", "item", "prompt", "reference", "choices", "response", "answer", "created",
                     *_ITEM_INFO)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Migrate a store written before a column of ``_ADDED_RESPONSE_COLUMNS`` existed (old rows read NULL). Two
    processes opening one old file at once may both try: the loser's "duplicate column" is the job done."""
    have = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
    for name, kind in _ADDED_RESPONSE_COLUMNS.items():
        if name not in have:
            try:
                db.execute(f"ALTER TABLE responses ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as err:
                if "duplicate column" not in str(err):
                    raise
    db.commit()


class StoreError(ValueError):
    """The store already holds a candidate of this name evaluated with other settings."""


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        try:
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
        finally:
            db.close()

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed row survives a kill and a power cut
        return db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        db = self._db()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def _write(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        db = self._db()
        try:
            with db:  # one transaction: all of these rows or none
                db.executemany(sql, rows)
        finally:
            db.close()

    def register(self, name: str, settings: dict, replace: bool = False) -> bool:
        """Record what ``name`` means (policy, adapter hash, generation settings), so a resumed run never mixes
        responses of two different models under one name. A clash is refused, or with ``replace`` (the candidate was
        retrained: its results answer for a model that no longer exists) its responses, verdicts and skips are dropped
        with the old settings, in one transaction. Returns whether anything was dropped."""
        text = json.dumps(settings, sort_keys=True)
        found = self._query("SELECT settings FROM candidates WHERE name = ?", (name,))
        if found and found[0][0] == text:
            return False
        if found and not replace:
            raise StoreError(f"{self.path.name}: candidate {name!r} was evaluated with other settings "
                             f"({found[0][0]}); use another name or another store")
        db = self._db()
        try:
            with db:
                for table in ("responses", "verdicts", "skipped"):
                    db.execute(f"DELETE FROM {table} WHERE model = ?", (name,))
                db.execute("INSERT OR REPLACE INTO candidates VALUES (?, ?, ?)", (name, text, time.time()))
        finally:
            db.close()
        return bool(found)

    def answered(self, model: str, task: str) -> set[str]:
        return {r[0] for r in self._query("SELECT item FROM responses WHERE model = ? AND task = ?", (model, task))}

    def put_responses(self, model: str, task: str, rows: list[dict]) -> None:
        """``rows``: item, prompt, reference, choices, response, answer, and optionally task_type, modality and family
        (the schema row's). A row already stored is kept as it was."""
        now = time.time()
        self._write(f"INSERT OR IGNORE INTO responses ({', '.join(_RESPONSE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_RESPONSE_COLUMNS))})",
                    [(model, task, r["item"], r["prompt"], r["reference"], json.dumps(r.get("choices")),
                      r["response"], r["answer"], now, *(r.get(k) for k in _ITEM_INFO)) for r in rows])

    def fill_item_info(self, model: str, task: str, rows: list[dict]) -> int:
        """Give stored responses the ``task_type``, ``modality`` and ``family`` they lack (written before the store
        kept them) from their rows; ``rows``: the task's (id and any of the three). Only missing values are written,
        and nothing when no row has a value to give. Returns the number of responses that gained a value."""
        lacking = {item: dict(zip(_ITEM_INFO, values)) for item, *values in self._query(
            f"SELECT item, {', '.join(_ITEM_INFO)} FROM responses WHERE model = ? AND task = ? AND "
            f"({' OR '.join(f'{k} IS NULL' for k in _ITEM_INFO)})", (model, task))}
        gaining = [r for r in rows if r["id"] in lacking
                   and any(lacking[r["id"]][k] is None and r.get(k) is not None for k in _ITEM_INFO)]
        self._write(f"UPDATE responses SET {', '.join(f'{k} = COALESCE({k}, ?)' for k in _ITEM_INFO)} "
                    "WHERE model = ? AND task = ? AND item = ?",
                    [(*(r.get(k) for k in _ITEM_INFO), model, task, r["id"]) for r in gaining])
        return len(gaining)

    def responses(self, model: str, task: str) -> list[dict]:
        """The stored responses, by item: item, prompt, reference, choices, response, answer, task_type, modality,
        family (the last three None in rows stored before they were kept, and family where the row has none)."""
        rows = self._query(f"SELECT item, prompt, reference, choices, response, answer, {', '.join(_ITEM_INFO)} "
                           "FROM responses WHERE model = ? AND task = ? ORDER BY item", (model, task))
        return [{"item": i, "prompt": p, "reference": ref, "choices": json.loads(c), "response": resp, "answer": a,
                 **dict(zip(_ITEM_INFO, info))}
                for i, p, ref, c, resp, a, *info in rows]

    def judged(self, model: str, task: str, judge: str, prompt_hash: str, round_: int) -> set[str]:
        """Items with a successful verdict (failures do not count: they are asked again)."""
        return {r[0] for r in self._query(
            "SELECT item FROM verdicts WHERE model = ? AND task = ? AND judge = ? AND prompt_hash = ? AND round = ? "
            "AND error IS NULL", (model, task, judge, prompt_hash, round_))}

    def put_verdicts(self, model: str, task: str, judge: str, prompt_hash: str, round_: int,
                     verdicts: list[dict]) -> None:
        """``verdicts``: item, label, p_yes, score, error, rule. A failure is replaced by the next attempt."""
        now = time.time()
        self._write("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(model, task, v["item"], judge, prompt_hash, round_,
                      None if v["label"] is None else int(v["label"]), v.get("p_yes"), v.get("score"), v.get("error"),
                      v.get("rule"), now) for v in verdicts])

    def drop_verdicts(self, model: str, task: str, judge: str, prompt_hash: str, items: list[str]) -> None:
        """Forget these items' verdicts (every round) so the next judging pass decides them again."""
        self._write("DELETE FROM verdicts WHERE model = ? AND task = ? AND judge = ? AND prompt_hash = ? AND item = ?",
                    [(model, task, judge, prompt_hash, item) for item in items])

    def verdicts(self, model: str, task: str, judge: str, prompt_hash: str) -> dict[str, list[dict]]:
        """item -> its verdicts, one per round."""
        out: dict[str, list[dict]] = {}
        for item, round_, label, p_yes, score, error, rule in self._query(
                "SELECT item, round, label, p_yes, score, error, rule FROM verdicts WHERE model = ? AND task = ? "
                "AND judge = ? AND prompt_hash = ? ORDER BY item, round", (model, task, judge, prompt_hash)):
            out.setdefault(item, []).append({"round": round_, "label": None if label is None else bool(label),
                                             "p_yes": p_yes, "score": score, "error": error, "rule": rule})
        return out

    def skip(self, model: str, task: str, reason: str) -> None:
        self._write("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?)", [(model, task, reason)])

    def skipped(self, model: str) -> dict[str, str]:
        return dict(self._query("SELECT task, reason FROM skipped WHERE model = ?", (model,)))

    def counts(self) -> dict[str, int]:
        return {table: self._query(f"SELECT COUNT(*) FROM {table}")[0][0]
                for table in ("candidates", "responses", "verdicts", "skipped")}
