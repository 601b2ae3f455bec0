"""The results store: an append-only JSON Lines file per run folder.

One line per (judge, category, example, repeat) holding the judge's :class:`JudgeResult` fields plus
what the metrics need (human label, group, model, prompt, kind). Lines are only ever appended, and
each batch is flushed and fsynced before the next one starts, so a crash loses at most the batch in
flight. A process killed mid-write can leave a torn last line; :meth:`ResultStore.open` detects it,
counts it, and cuts it off before anything new is appended. Keys already present are never written
again, so rerunning a run after a kill finishes the rest without duplicates.

One exception keeps backend outages from being final: a record whose status is ``error`` may be
superseded by a later line with the same key (a rerun judges failed items again). Readers then see
the later record; the error line stays in the file as history and is counted as ``superseded``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.schema import DataError


__all__ = ["RESULTS_FILE", "ResultStore", "StoreStats", "read_results", "record_key"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
_LOCK_FILE = ".results.lock"
_KEY_FIELDS = ("judge", "category", "example_id", "repeat")

Key = tuple[str, str, str, int]


def record_key(record: dict[str, Any]) -> Key:
    """The identity of a stored judgment: (judge, category, example id, repeat)."""
    return str(record["judge"]), str(record["category"]), str(record["example_id"]), int(record["repeat"])


@dataclass
class StoreStats:
    """What opening a store found: lines kept, torn lines dropped, duplicate lines ignored."""

    records: int = 0
    torn: int = 0
    duplicates: int = 0
    superseded: int = 0
    appended: int = 0
    skipped_existing: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def _scan(path: Path) -> tuple[list[dict[str, Any]], int, bool, int, int]:
    """Parse the file: records, good-prefix length, torn tail?, duplicate and superseded line counts.

    A line that ends in a newline was written whole (``json.dumps`` never writes a newline inside a
    record), so only the text after the last newline can be a write cut short. A bad complete line
    is corruption and raises, since skipping it would drop a result silently. A good record that
    merely lacks its newline is kept. A later line replaces an earlier ``error`` record of the same
    key; any other repeated key is a duplicate and the first line wins.
    """
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")
    records: list[dict[str, Any]] = []
    position: dict[Key, int] = {}
    counts = {"duplicates": 0, "superseded": 0}

    def add(line: bytes, number: int, strict: bool) -> bool:
        try:
            record = json.loads(line)
            key = record_key(record)
        except (UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
            if not strict:
                return False
            expected = "a JSON object with " + ", ".join(_KEY_FIELDS)
            raise DataError(str(path), number, "<line>", expected, str(error)) from error
        if key not in position:
            position[key] = len(records)
            records.append(record)
        elif records[position[key]].get("status") == "error":
            records[position[key]] = record
            counts["superseded"] += 1
        else:
            counts["duplicates"] += 1
        return True

    for number, line in enumerate(complete, start=1):
        if line.strip():
            add(line, number, strict=True)
    good_end = len(data) - len(tail)
    torn = bool(tail.strip()) and not add(tail, len(complete) + 1, strict=False)
    return records, good_end, torn, counts["duplicates"], counts["superseded"]


class ResultStore:
    """Append-only JSON Lines store of judgments, keyed by (judge, category, example, repeat).

    Use :meth:`open` (which repairs a torn tail); one process at a time holds the store's lock, so
    two runs writing into the same folder fail fast instead of interleaving.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_FILE
        self.stats = StoreStats()
        self._index: dict[Key, int] = {}
        self._records: list[dict[str, Any]] = []
        self._lock_handle: Any = None

    @classmethod
    def open(cls, run_dir: str | Path, *, lock: bool = True) -> ResultStore:
        """Open (or create) the store in ``run_dir``, dropping a torn last line."""
        store = cls(run_dir)
        store.run_dir.mkdir(parents=True, exist_ok=True)
        if lock:
            store._acquire_lock()
        if store.path.is_file():
            records, good_end, torn, duplicates, superseded = _scan(store.path)
            if torn:
                with open(store.path, "r+b") as handle:
                    handle.truncate(good_end)
                    os.fsync(handle.fileno())
                logger.warning("dropped a torn last line of %s (an interrupted write)", store.path)
            elif good_end != store.path.stat().st_size:
                with open(store.path, "ab") as handle:  # a whole record that lacks its newline
                    handle.write(b"\n")
                    os.fsync(handle.fileno())
            if duplicates:
                logger.warning("%s holds %d duplicate lines; the first of each is used", store.path, duplicates)
            store._records = records
            store._index = {record_key(r): i for i, r in enumerate(records)}
            store.stats = StoreStats(
                records=len(records), torn=int(torn), duplicates=duplicates, superseded=superseded
            )
        store.stats.by_status = _count_status(store._records)
        return store

    def _acquire_lock(self) -> None:
        handle = open(self.run_dir / _LOCK_FILE, "w")  # noqa: SIM115 (held for the store's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            raise RuntimeError(f"{self.path}: another process is writing this run folder") from error
        self._lock_handle = handle

    def close(self) -> None:
        """Release the lock."""
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, key: Key) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._records)

    def is_error(self, key: Key) -> bool:
        """Whether the stored record of ``key`` is a backend error (which a later record may replace)."""
        index = self._index.get(key)
        return index is not None and self._records[index].get("status") == "error"

    def records(self) -> list[dict[str, Any]]:
        """Every current record (a superseded error is replaced by its successor), in first-write order."""
        return list(self._records)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append the records whose key is new or holds an error; flush and fsync once for the batch.

        Returns:
            How many records were written (other keys already present are skipped and counted).
        """
        fresh = []
        for record in records:
            key = record_key(record)
            if key in self._index and not self.is_error(key):
                self.stats.skipped_existing += 1
                continue
            fresh.append(record)
        if not fresh:
            return 0
        payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in fresh)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        for record in fresh:
            key = record_key(record)
            if key in self._index:
                self._records[self._index[key]] = record
                self.stats.superseded += 1
            else:
                self._index[key] = len(self._records)
                self._records.append(record)
        self.stats.appended += len(fresh)
        self.stats.by_status = _count_status(self._records)
        return len(fresh)


def _count_status(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.get("status", "?")] = counts.get(record.get("status", "?"), 0) + 1
    return counts


def read_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """Read a run folder's records without locking or repairing (for reports)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise DataError(str(path), None, RESULTS_FILE, "a results store written by `judgeforge eval`", "missing file")
    records, _, torn, duplicates, _ = _scan(path)
    if torn or duplicates:
        logger.warning("%s: ignored %d torn and %d duplicate lines", path, int(torn), duplicates)
    return records
