"""The results store: an append-only JSON Lines file per run folder (or one named file: ``judgeforge judge``).

One line per (judge, category, example, repeat) holding the judge's :class:`JudgeResult` fields plus
what the metrics need (human label, group, model, prompt, kind). Lines are only ever appended, and
each batch is flushed and fsynced before the next one starts, so a crash loses at most the batch in
flight. A process killed mid-write can leave a torn last line; :meth:`ResultStore.open` detects it,
counts it, and cuts it off before anything new is appended. Keys already present are never written
again, so rerunning a run after a kill finishes the rest without duplicates.

One exception keeps backend outages from being final: a record whose status is ``error`` may be
superseded by a later line with the same key (a rerun judges failed items again). Readers then see
the later record; the error line stays in the file as history and is counted as ``superseded``.

:meth:`ResultStore.open_file` keeps the same promises for one named file keyed by another field
(``judgeforge judge --out`` is keyed by ``id``). Lines are read by :func:`recipes.readers.scan_jsonl`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.records import JudgmentRecord
from recipes.readers import scan_jsonl
from recipes.schema import DataError


__all__ = [
    "RESULTS_FILE",
    "ResultStore",
    "StoreLockedError",
    "StoreStats",
    "read_records",
    "read_results",
    "record_key",
]

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
_LOCK_FILE = ".results.lock"
_KEY_FIELDS = ("judge", "category", "example_id", "repeat")

Key = tuple[str, str, str, int]
KeyFn = Callable[[dict[str, Any]], Any]


class StoreLockedError(RuntimeError):
    """Another process holds the store's lock (two runs writing one place)."""


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


def _scan(path: Path, key: KeyFn, key_fields: Sequence[str]) -> tuple[list[dict[str, Any]], int, bool, int, int]:
    """Parse the file: records, good-prefix length, torn tail?, duplicate and superseded line counts.

    The lines are read by :func:`recipes.readers.scan_jsonl` (one policy for every JSON Lines file):
    a bad complete line is corruption and raises with its line number, since skipping it would drop
    a result silently; only the text after the last newline can be a torn write. A later line
    replaces an earlier ``error`` record of the same key; any other repeated key is a duplicate and
    the first line wins.
    """
    expected = "a JSON object with " + ", ".join(key_fields)
    scan = scan_jsonl(path, expected=expected)
    records: list[dict[str, Any]] = []
    position: dict[Any, int] = {}
    duplicates = superseded = 0
    for line in scan.lines:
        if line.error:
            raise line.error
        try:
            record_id = key(line.value)
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(str(path), line.number, "<line>", expected, str(error)) from error
        if record_id not in position:
            position[record_id] = len(records)
            records.append(line.value)
        elif records[position[record_id]].get("status") == "error":
            records[position[record_id]] = line.value
            superseded += 1
        else:
            duplicates += 1
    return records, scan.good_end, scan.torn is not None, duplicates, superseded


class ResultStore:
    """Append-only JSON Lines store of judgments, keyed by (judge, category, example, repeat).

    Use :meth:`open` (which repairs a torn tail); one process at a time holds the store's lock, so
    two runs writing into the same folder fail fast instead of interleaving.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        path: str | Path | None = None,
        key: KeyFn = record_key,
        key_fields: Sequence[str] = _KEY_FIELDS,
        lock_path: str | Path | None = None,
        sort_keys: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.path = Path(path) if path is not None else self.run_dir / RESULTS_FILE
        self.key, self.key_fields = key, tuple(key_fields)
        self.lock_path = Path(lock_path) if lock_path is not None else self.run_dir / _LOCK_FILE
        self.sort_keys = sort_keys
        self.stats = StoreStats()
        self._index: dict[Any, int] = {}
        self._records: list[dict[str, Any]] = []
        self._lock_handle: Any = None

    @classmethod
    def open(cls, run_dir: str | Path, *, lock: bool = True) -> ResultStore:
        """Open (or create) the store in ``run_dir``, dropping a torn last line."""
        return cls(run_dir)._open(lock)

    @classmethod
    def open_file(
        cls, path: str | Path, *, key: KeyFn, key_fields: Sequence[str], lock: bool = True, sort_keys: bool = True
    ) -> ResultStore:
        """Open (or create) a store kept in one named file (``judgeforge judge --out``), keyed by ``key``.

        The lock is a hidden file beside it (``.<name>.lock``), so two runs on one file cannot both
        write; ``sort_keys=False`` keeps each record's own key order on disk.
        """
        path = Path(path)
        lock_path = path.with_name(f".{path.name}.lock")
        store = cls(path.parent, path=path, key=key, key_fields=key_fields, lock_path=lock_path, sort_keys=sort_keys)
        return store._open(lock)

    def _open(self, lock: bool) -> ResultStore:
        store = self
        store.run_dir.mkdir(parents=True, exist_ok=True)
        if lock:
            store._acquire_lock()
        if store.path.is_file():
            try:
                records, good_end, torn, duplicates, superseded = _scan(store.path, store.key, store.key_fields)
            except DataError:
                store.close()
                raise
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
            store._index = {store.key(r): i for i, r in enumerate(records)}
            store.stats = StoreStats(
                records=len(records), torn=int(torn), duplicates=duplicates, superseded=superseded
            )
        store.stats.by_status = _count_status(store._records)
        return store

    def _acquire_lock(self) -> None:
        handle = open(self.lock_path, "w")  # noqa: SIM115 (held for the store's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            where = "run folder" if self.path.name == RESULTS_FILE else "file"
            raise StoreLockedError(f"{self.path}: another process is writing this {where}") from error
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

    def __contains__(self, key: Any) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._records)

    def is_error(self, key: Any) -> bool:
        """Whether the stored record of ``key`` is a backend error (which a later record may replace)."""
        index = self._index.get(key)
        return index is not None and self._records[index].get("status") == "error"

    def records(self) -> list[dict[str, Any]]:
        """Every current record (a superseded error is replaced by its successor), in first-write order."""
        return list(self._records)

    def append(self, records: Iterable[dict[str, Any] | JudgmentRecord]) -> int:
        """Append the records whose key is new or holds an error; flush and fsync once for the batch.

        Returns:
            How many records were written (other keys already present are skipped and counted).
        """
        fresh = []
        for given in records:
            record = given.to_dict() if isinstance(given, JudgmentRecord) else given
            key = self.key(record)
            if key in self._index and not self.is_error(key):
                self.stats.skipped_existing += 1
                continue
            fresh.append(record)
        if not fresh:
            return 0
        payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=self.sort_keys) + "\n" for r in fresh)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        for record in fresh:
            key = self.key(record)
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
    records, _, torn, duplicates, _ = _scan(path, record_key, _KEY_FIELDS)
    if torn or duplicates:
        logger.warning("%s: ignored %d torn and %d duplicate lines", path, int(torn), duplicates)
    return records


def read_records(run_dir: str | Path) -> list[JudgmentRecord]:
    """A run folder's records, typed (what reports read)."""
    return [JudgmentRecord.from_dict(r) for r in read_results(run_dir)]
