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

A run split across processes (:mod:`evaluation.distributed`) keeps one file per rank: rank 0 writes
``results.jsonl`` as a single process does, rank ``r`` writes ``results.rank-<r>.jsonl``. Every
reader merges all of them in that order (a key is one judgment wherever it was written), so a rerun
with any number of processes sees what every earlier rank finished. Rank 0 holds the folder's lock
for the whole run and, before any other rank starts, cuts the torn tails of every file.
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
from recipes.readers import JsonlLine, scan_jsonl
from recipes.schema import DataError


__all__ = [
    "RESULTS_FILE",
    "ResultStore",
    "StoreLockedError",
    "StoreStats",
    "read_records",
    "read_results",
    "record_key",
    "store_files",
    "write_atomically",
]

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
_RANK_PREFIX = "results.rank-"
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


def rank_file(rank: int) -> str:
    """The store file rank ``rank`` of a multi-process run appends to (rank 0: ``results.jsonl``)."""
    return RESULTS_FILE if rank == 0 else f"{_RANK_PREFIX}{rank}.jsonl"


def _merge_order(path: Path) -> int:
    """``results.jsonl`` (or a named file) first, then rank files by rank; -1: not a rank file."""
    number = path.name[len(_RANK_PREFIX) : -len(".jsonl")] if path.name.startswith(_RANK_PREFIX) else ""
    return int(number) if number.isdigit() and path.suffix == ".jsonl" else (0 if path.name == RESULTS_FILE else -1)


def store_files(run_dir: str | Path) -> list[Path]:
    """A run folder's store files in merge order: ``results.jsonl``, then every rank file by rank."""
    folder = Path(run_dir)
    found = [p for p in folder.glob("results*.jsonl") if p.is_file() and _merge_order(p) >= 0]
    return sorted(found, key=_merge_order)


@dataclass
class _Scanned:
    """One file's complete values, where its good prefix ends, and whether a torn tail follows."""

    lines: list[JsonlLine]
    good_end: int
    torn: bool


def _scan(path: Path, key_fields: Sequence[str]) -> _Scanned:
    """Parse one file by :func:`recipes.readers.scan_jsonl` (one policy for every JSON Lines file).

    A bad complete line is corruption and raises with its line number, since skipping it would drop
    a result silently; only the text after the last newline can be a torn write.
    """
    scan = scan_jsonl(path, expected="a JSON object with " + ", ".join(key_fields))
    for line in scan.lines:
        if line.error:
            raise line.error
    return _Scanned(scan.lines, scan.good_end, scan.torn is not None)


def _merge(
    files: Sequence[tuple[Path, list[JsonlLine]]], key: KeyFn, key_fields: Sequence[str]
) -> tuple[list[dict[str, Any]], int, int]:
    """One record per key over the files in order: records, duplicate and superseded line counts.

    A later line replaces an earlier ``error`` record of the same key (a rerun judged it again);
    any other repeated key is a duplicate and the first line wins.
    """
    records: list[dict[str, Any]] = []
    position: dict[Any, int] = {}
    duplicates = superseded = 0
    for path, lines in files:
        for line in lines:
            try:
                record_id = key(line.value)
            except (KeyError, TypeError, ValueError) as error:
                expected = "a JSON object with " + ", ".join(key_fields)
                raise DataError(str(path), line.number, "<line>", expected, str(error)) from error
            if record_id not in position:
                position[record_id] = len(records)
                records.append(line.value)
            elif records[position[record_id]].get("status") == "error":
                records[position[record_id]] = line.value
                superseded += 1
            else:
                duplicates += 1
    return records, duplicates, superseded


def _read_files(
    paths: Sequence[Path], key: KeyFn, key_fields: Sequence[str], repair: Callable[[Path], bool]
) -> tuple[list[dict[str, Any]], StoreStats]:
    """Scan the files that exist (repairing those ``repair`` names) and merge them: records and counts."""
    files, torn = [], 0
    for path in paths:
        if not path.is_file():
            continue
        scanned = _scan(path, key_fields)
        if repair(path):
            _repair(path, scanned)
        torn += int(scanned.torn)
        files.append((path, scanned.lines))
    records, duplicates, superseded = _merge(files, key, key_fields)
    stats = StoreStats(records=len(records), torn=torn, duplicates=duplicates, superseded=superseded)
    stats.by_status = _count_status(records)
    return records, stats


def _repair(path: Path, scanned: _Scanned) -> None:
    """Cut a torn last line off (an interrupted write), or end a whole last record with its newline."""
    if scanned.torn:
        with open(path, "r+b") as handle:
            handle.truncate(scanned.good_end)
            os.fsync(handle.fileno())
        logger.warning("dropped a torn last line of %s (an interrupted write)", path)
    elif scanned.good_end != path.stat().st_size:
        with open(path, "ab") as handle:
            handle.write(b"\n")
            os.fsync(handle.fileno())


class ResultStore:
    """Append-only JSON Lines store of judgments, keyed by (judge, category, example, repeat).

    Use :meth:`open` (which repairs a torn tail); one process at a time holds the store's lock, so
    two runs writing into the same folder fail fast instead of interleaving. ``others`` are files
    read beside the one written (the other ranks' files of a run folder).
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
        self.others: list[Path] = []
        self.stats = StoreStats()
        self._index: dict[Any, int] = {}
        self._records: list[dict[str, Any]] = []
        self._lock_handle: Any = None

    @classmethod
    def open(cls, run_dir: str | Path, *, lock: bool = True, rank: int = 0) -> ResultStore:
        """Open (or create) the store in ``run_dir`` for ``rank``, reading every rank's file.

        Rank 0 (a single process too) takes the folder's lock and repairs every file; another rank
        opens only once rank 0 holds the lock (:mod:`evaluation.distributed` waits for it), reads
        the other files as they are and appends to its own.
        """
        folder = Path(run_dir)
        store = cls(folder, path=folder / rank_file(rank))
        store.others = [p for p in store_files(folder) if p != store.path]
        return store._open(lock and rank == 0, repair_others=rank == 0)

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

    def _open(self, lock: bool, repair_others: bool = False) -> ResultStore:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if lock:
            self._acquire_lock()
        try:
            self._read(repair_own=True, repair_others=repair_others)
        except DataError:
            self.close()
            raise
        return self

    def _read(self, *, repair_own: bool, repair_others: bool) -> None:
        """Read the own file and the others into one index (repairing torn tails where asked)."""
        paths = sorted({self.path, *self.others}, key=_merge_order)
        records, self.stats = _read_files(
            paths, self.key, self.key_fields, lambda p: repair_own if p == self.path else repair_others
        )
        duplicates = self.stats.duplicates
        if duplicates:
            logger.warning("%s holds %d duplicate lines; the first of each is used", self.run_dir, duplicates)
        self._records = records
        self._index = {self.key(r): i for i, r in enumerate(records)}

    def refresh(self) -> None:
        """Read every file again, repairing nothing (after the other ranks finished a phase)."""
        self.others = [p for p in store_files(self.run_dir) if p != self.path]
        self._read(repair_own=False, repair_others=False)

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
    """Read a run folder's records from every rank's file, without locking or repairing (for reports)."""
    files = store_files(run_dir)
    if not files:
        path = Path(run_dir) / RESULTS_FILE
        raise DataError(str(path), None, RESULTS_FILE, "a results store written by `judgeforge eval`", "missing file")
    records, stats = _read_files(files, record_key, _KEY_FIELDS, lambda _: False)
    if stats.torn or stats.duplicates:
        logger.warning("%s: ignored %d torn and %d duplicate lines", run_dir, stats.torn, stats.duplicates)
    return records


def read_records(run_dir: str | Path) -> list[JudgmentRecord]:
    """A run folder's records, typed (what reports read)."""
    return [JudgmentRecord.from_dict(r) for r in read_results(run_dir)]


def write_atomically(path: str | Path, text: str) -> None:
    """Replace ``path`` whole: a killed write leaves the old file, never a torn one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8", newline="")
    os.replace(tmp, path)
