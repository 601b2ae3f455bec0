"""Typed records between a run and its report: one judgment, the run's description, one metrics row.

The files on disk stay plain JSON (``results.jsonl``, ``run.json``, ``metrics.csv``) so old run
folders still read; these classes are what the code passes around instead of dicts read back with
``.get`` defaults. Each has ``from_dict`` (the defaults an old or partial file needs, in one place)
and ``to_dict`` (exactly the JSON written today). :class:`JudgeName` builds and parses the names of
second-level judges, ``<first judge>+review:<reviewer>``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluation import registry


__all__ = ["NO_LABEL", "REVIEW_SEP", "JudgeName", "JudgmentRecord", "MetricRow", "RunInfo", "as_record"]

REVIEW_SEP = "+review:"
# The answer category of an output without a label, when comparing repeats.
NO_LABEL = "none"


@dataclass(frozen=True)
class JudgeName:
    """A judge's name; a second-level judge's name is ``<first>+review:<reviewer>``."""

    first: str
    reviewer: str | None = None

    @classmethod
    def parse(cls, name: str) -> JudgeName:
        """Split at the last ``+review:`` (a first judge may itself be a model path with ``+``)."""
        first, sep, reviewer = name.rpartition(REVIEW_SEP)
        return cls(first, reviewer) if sep else cls(name)

    @classmethod
    def review(cls, first: str, reviewer: str) -> JudgeName:
        """The name of ``first`` reviewed by ``reviewer`` (a short model name)."""
        return cls(first, reviewer)

    @property
    def is_review(self) -> bool:
        """Whether this names a second-level judge."""
        return self.reviewer is not None

    def reviewing(self, first: str) -> JudgeName:
        """The same reviewer on another first judge (``best`` resolved to the chosen judge)."""
        return dataclasses.replace(self, first=first)

    def __str__(self) -> str:
        return self.first if self.reviewer is None else f"{self.first}{REVIEW_SEP}{self.reviewer}"


# The store's fields in the order of JudgeResult, then what runs adds; ``reviews`` only when set.
_RESULT_FIELDS = ("example_id", "label", "status", "p_positive", "raw", "explanation", "score", "error", "tokens",
                  "review")  # fmt: skip


@dataclass
class JudgmentRecord:
    """One line of ``results.jsonl``: a judge's result on one example and repeat, with what the metrics need."""

    judge: str
    category: str
    example_id: str
    repeat: int
    human_label: int
    label: int | None
    status: str
    kind: str = ""
    model: str = ""
    prompt: str = ""
    backend: str = ""
    group: str = ""
    source: str = ""  # the example's source (one of a mixture's); "" in stores written before it was kept
    p_positive: float | None = None
    raw: str = ""
    explanation: str = ""
    score: int | None = None
    error: str = ""
    tokens: int = 0
    review: dict[str, Any] | None = None
    reviews: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(
        cls, result: Any, *, judge: str, kind: str, model: str, prompt: str, backend: str, category: str,
        example: Mapping[str, Any], repeat: int, reviews: str | None = None,
    ) -> JudgmentRecord:  # fmt: skip
        """A record of a :class:`evaluation.judges.JudgeResult` on ``example`` (a non-finite P(positive) is None)."""
        values = {name: getattr(result, name) for name in _RESULT_FIELDS}
        p_positive = values.pop("p_positive")
        if isinstance(p_positive, float) and not math.isfinite(p_positive):
            p_positive = None
        return cls(
            judge=judge, category=category, example_id=str(example["id"]), repeat=repeat,
            human_label=int(example["label"]), kind=kind, model=model, prompt=prompt, backend=backend,
            group=str(example.get("group") or example["id"]), source=str(example.get("source") or ""),
            p_positive=p_positive, reviews=reviews or None,
            **{k: v for k, v in values.items() if k != "example_id"},
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgmentRecord:
        """A stored line (older lines may lack ``kind``, ``model``, ``group``, ...; unknown keys are kept)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        known["example_id"], known["repeat"] = str(known["example_id"]), int(known["repeat"])
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        """The stored line, exactly as ``runs`` has always written it."""
        out = {name: getattr(self, name) for name in _RESULT_FIELDS}
        out.update(judge=self.judge, kind=self.kind, model=self.model, prompt=self.prompt, backend=self.backend,
                   category=self.category, example_id=self.example_id, repeat=self.repeat,
                   human_label=self.human_label, group=self.group, source=self.source)  # fmt: skip
        if self.reviews:
            out["reviews"] = self.reviews
        return out | self.extra

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The store's identity of this judgment."""
        return self.judge, self.category, self.example_id, self.repeat

    @property
    def cluster(self) -> str:
        """The bootstrap's resampling unit: the example's group within its category."""
        return f"{self.category}:{self.group or self.example_id}"

    @property
    def answer(self) -> Any:
        """The answer compared across repeats: the label, or ``"none"`` without one."""
        return self.label if self.status == "ok" else NO_LABEL


def as_record(record: JudgmentRecord | Mapping[str, Any]) -> JudgmentRecord:
    """A record, whether given typed or as a stored dict."""
    return record if isinstance(record, JudgmentRecord) else JudgmentRecord.from_dict(record)


@dataclass
class RunInfo:
    """``run.json``: what a run folder holds (recipe, data, judges) and how its last run ended."""

    name: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    repeats: int | None = None
    seed: int | None = None
    n_boot: int | None = None
    judges: list[dict[str, Any]] = field(default_factory=list)
    second_level_choice: dict[str, str] = field(default_factory=dict)
    finished: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        """A ``run.json`` as written by any version (missing keys take their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names and v is not None}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``run.json``, keys in the order runs have always written them."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("finished", "extra")}
        if self.finished is not None:
            out["finished"] = self.finished
        return out | self.extra

    @property
    def boot(self) -> int:
        """Bootstrap resamples of the report (1000 when the run did not say)."""
        return int(self.n_boot if self.n_boot is not None else 1000)

    @property
    def report_seed(self) -> int:
        """The bootstrap seed of the report (0 when the run did not say)."""
        return int(self.seed or 0)

    def judge_names(self) -> set[str]:
        """The judges' names as the run recorded them."""
        return {j["name"] for j in self.judges}

    def deterministic(self) -> dict[str, bool]:
        """Per recorded judge, whether it was computed once for every repeat."""
        return {j["name"]: bool(j.get("deterministic")) for j in self.judges}

    def base_models(self) -> dict[str, str]:
        """Per tuned judge, the model it was tuned from ('' when unknown)."""
        return {j["name"]: j.get("base_model", "") for j in self.judges if j.get("kind") == registry.TUNED}

    def resolved_name(self, name: str) -> str:
        """A second-level judge's name with ``best`` replaced by the judge the run chose."""
        choice = self.second_level_choice.get(name)
        if not choice:
            return name
        parsed = JudgeName.parse(name)
        return str(parsed.reviewing(choice)) if parsed.first == "best" else name

    def skipped_reasons(self) -> dict[str, int]:
        """Why the last run left items unjudged."""
        return dict((self.finished or {}).get("skipped_reasons") or {})


class MetricRow(dict):
    """One row of metrics (``metrics.csv`` / ``second_level.csv``): a judge on one category or ``all``.

    The row is the flat dict it always was (``judge``, ``category``, the metrics in file order,
    ``reasons``: why each NaN is one), so it stays JSON and one list of columns; the properties
    name what the report reads from it.
    """

    @classmethod
    def of(cls, judge: str, category: str, values: Mapping[str, Any], reasons: Mapping[str, str]) -> MetricRow:
        """A row of ``judge`` on ``category`` with its metric ``values`` and NaN ``reasons``."""
        return cls({"judge": judge, "category": category, **values, "reasons": dict(reasons)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRow:
        """A row from its flat form (``reasons`` may be missing)."""
        row = cls(data)
        row.setdefault("reasons", {})
        return row

    def to_dict(self) -> dict[str, Any]:
        """The flat form."""
        return dict(self)

    @property
    def judge(self) -> str:
        """The judge's name."""
        return str(self["judge"])

    @property
    def category(self) -> str:
        """The category, or ``all``."""
        return str(self["category"])

    @property
    def kind(self) -> str:
        """The judge's kind (prompted, tuned, guard, reference, second_level)."""
        return str(self.get("kind", ""))

    @property
    def model(self) -> str:
        """The judge's (or reviewer's) model."""
        return str(self.get("model", ""))

    @property
    def prompt(self) -> str:
        """The judge's prompt template."""
        return str(self.get("prompt", ""))

    @property
    def reasons(self) -> dict[str, str]:
        """Why each NaN of the row is one."""
        return self.get("reasons") or {}

    def reason(self, key: str, default: str) -> str:
        """Why ``key`` has no number."""
        return self.reasons.get(key, default)
