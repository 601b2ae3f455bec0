"""The run folder's own files: ``run.json`` (what the run holds, checked on every rerun; how it ended), what is done.

A rerun into the same folder resumes; these functions refuse to mix the results of different judges
(or different data) under one name, and count the stored judgments the rerun will not redo.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.plan import JudgeEntry
from evaluation.records import JudgeName, JudgmentRecord, RunInfo
from evaluation.run_data import RunData
from evaluation.run_recipe import BEST, RunRecipe
from evaluation.store import ResultStore, record_key, write_atomically
from recipes.schema import DataError


__all__ = [
    "RANK_FIELDS",
    "RUN_FILE",
    "RunSummary",
    "already_done",
    "check_previous",
    "merge_summaries",
    "resolved_name",
    "spec_view",
    "write_run_file",
]

RUN_FILE = "run.json"
# What run.json keeps of each process: its busy time and the cost model's prediction, also per judge.
RANK_FIELDS = ("rank", "busy_s", "first_level_busy_s", "cost", "units", "judged", "judges")
_SPEC_KEYS = ("model", "prompt", "backend", "temperature", "max_new_tokens", "options")


def spec_view(entry: JudgeEntry) -> dict[str, Any]:
    """What ``run.json`` records of a judge; its spec keys must match on a rerun."""
    spec = dataclasses.asdict(entry.spec)
    return {
        "name": entry.name,
        "kind": entry.kind,
        **{k: spec[k] for k in _SPEC_KEYS},
        "deterministic": entry.deterministic(),
        "reviews": entry.reviews,
        "base_model": entry.base_model,
    }


def check_previous(run_file: Path, judges: list[dict[str, Any]], data_info: dict[str, Any]) -> dict[str, Any]:
    """Refuse to mix results of different judges (or different data) under the same names."""
    if not run_file.is_file():
        return {}
    previous = RunInfo.from_dict(json.loads(run_file.read_text("utf-8")))
    before = {j["name"]: j for j in previous.judges}
    for judge in judges:
        old = before.get(judge["name"])
        if old and any(old.get(k) != judge.get(k) for k in _SPEC_KEYS):
            changed = [k for k in _SPEC_KEYS if old.get(k) != judge.get(k)]
            raise DataError(str(run_file), None, f"judges.{judge['name']}", "the same settings as the stored run "
                            "(use another --out for a changed judge)", {k: judge.get(k) for k in changed})  # fmt: skip
    old_hash, new_hash = previous.data.get("recipe_hash"), data_info.get("recipe_hash")
    if old_hash and new_hash and old_hash != new_hash:
        raise DataError(str(run_file), None, "data", f"the data the run started with (hash {old_hash})", new_hash)
    return previous.to_dict()


def write_run_file(path: Path, info: RunInfo) -> None:
    """Replace ``run.json`` whole (a killed write leaves the old one)."""
    write_atomically(path, json.dumps(info.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")


def resolved_name(entry: JudgeEntry, target: str) -> str:
    """A ``best`` review's name once the judge it reviews is chosen."""
    if entry.reviews != BEST:
        return entry.name
    return str(JudgeName.parse(entry.name).reviewing(target))


def already_done(
    store: ResultStore,
    entries: list[JudgeEntry],
    data: RunData,
    recipe: RunRecipe,
    choices: dict[str, str],
    attacked: dict[str, list[dict]],
) -> int:
    """Stored judgments (errors aside) the run will not redo: the progress bar starts there."""
    names = set()
    first_level = {e.name for e in entries if e.kind != registry.SECOND_LEVEL}
    for entry in entries:
        if entry.kind == registry.SECOND_LEVEL and entry.reviews == BEST:
            if entry.name not in choices:
                continue
            names.add(resolved_name(entry, choices[entry.name]))
        else:
            names.add(entry.name)
    wanted = {
        (name, category, str(e["id"]), repeat)
        for name in names
        for category, examples in data.examples.items()
        for e in examples
        for repeat in range(recipe.repeats)
    }
    wanted |= {
        (name, category, str(c["id"]), 0) for name in first_level for category, cs in attacked.items() for c in cs
    }
    return sum(1 for r in store.records() if record_key(r) in wanted and r["status"] != "error")


@dataclass
class RunSummary:
    """Counts for the final line."""

    name: str
    judged: int = 0
    invalid: int = 0
    refusal: int = 0
    error: int = 0
    skipped: int = 0
    resumed: int = 0
    total: int = 0
    store: str = ""
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    ranks: list[dict[str, Any]] = field(default_factory=list)  # per process of a multi-process run

    def line(self) -> str:
        """The one summary line a run ends with."""
        text = (
            f"{self.name}: judged {self.judged} (invalid {self.invalid}, refusal {self.refusal}, error {self.error}), "
            f"skipped {self.skipped}, resumed {self.resumed}; {self.total} judgments in {self.store}"
        )
        if self.skipped_reasons:
            text += " | skipped: " + "; ".join(f"{n} × {why}" for why, n in self.skipped_reasons.items())
        if len(self.ranks) > 1:
            busy = ", ".join(f"{r['busy_s']:.0f} s ({r['units']} units)" for r in self.ranks)
            text += f" | {len(self.ranks)} processes busy: {busy}"
        return text

    def count(self, records: Sequence[JudgmentRecord]) -> None:
        """Add newly written records to the counts."""
        self.judged += len(records)
        for record in records:
            if record.status in ("invalid", "refusal", "error"):
                setattr(self, record.status, getattr(self, record.status) + 1)

    def skip(self, n: int, reason: str) -> None:
        """Count ``n`` items left unjudged, with the reason."""
        if n:
            self.skipped += n
            self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + n


def merge_summaries(summaries: Sequence[dict[str, Any]], name: str) -> RunSummary:
    """The whole run's counts from every rank's (resumed is the same count on every rank)."""
    total = RunSummary(name=name, resumed=summaries[0]["resumed"], store=summaries[0]["store"])
    for part in summaries:
        for key in ("judged", "invalid", "refusal", "error", "skipped"):
            setattr(total, key, getattr(total, key) + part[key])
        for why, n in part["skipped_reasons"].items():
            total.skipped_reasons[why] = total.skipped_reasons.get(why, 0) + n
    return total
