"""``judge.json``: how a tuned judge was trained, so evaluation can load it without guessing.

Training writes it next to the adapter or model; evaluation reads it to pick the same prompt
template, verdict words and field budget. It lives in ``recipes`` because both layers need it and
they never import each other.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.prompts import FieldBudget, budget_dict, parse_budget
from recipes.schema import DataError


__all__ = ["JUDGE_CARD", "JudgeCard"]

JUDGE_CARD = "judge.json"


@dataclass
class JudgeCard:
    """What evaluation needs to know about a tuned judge.

    Attributes:
        base_model: the model name the tuning started from (alias, hub id or folder).
        adapter: True when the folder holds a LoRA adapter on top of ``base_model``.
        prompt_template: the judge prompt the model was trained with.
        verdict_words: ``{category: [positive, negative]}`` for every trained category.
        data_recipe_hash: hash of the data recipe that built the training set.
        budget: the per-field character budget used when rendering training prompts.
        metrics: final validation metrics (F1, precision, ...).
        threshold: decision threshold on P(positive) chosen on validation (0.5 when not tuned).
        render: how the judged text was rendered in training (one of :data:`recipes.prompts.RENDERS`);
            evaluation renders it the same way.
        robustness: the judge's figures under victim-side attacks, when measured
            (:meth:`with_robustness`): clean F1, F1 and flip rate per attack, on which split.
        thresholds: per-category thresholds chosen on each category's validation rows; a category
            not listed uses ``threshold``.
    """

    base_model: str
    prompt_template: str
    verdict_words: dict[str, list[str]]
    adapter: bool = True
    data_recipe_hash: str = ""
    budget: dict[str, Any] = field(default_factory=lambda: budget_dict(FieldBudget()))
    metrics: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5
    render: str = "plain"
    robustness: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    judgeforge_version: str = "0.1.0"

    @property
    def categories(self) -> list[str]:
        """The categories the judge was trained on."""
        return sorted(self.verdict_words)

    def threshold_for(self, category: str) -> float:
        """The decision threshold of ``category``: its own where one was chosen, else the global one."""
        return float(self.thresholds.get(category, self.threshold))

    def field_budget(self) -> FieldBudget:
        """The training-time budget as a :class:`FieldBudget` (its per-category entries included)."""
        return parse_budget(self.budget)

    def with_robustness(self, figures: dict[str, Any]) -> JudgeCard:
        """A copy recording the judge's figures under attack (``evaluation.robustness.robustness_summary``)."""
        return dataclasses.replace(self, robustness=dict(figures))

    def write(self, folder: str | Path) -> Path:
        """Write ``judge.json`` into ``folder``."""
        path = Path(folder) / JUDGE_CARD
        payload = dataclasses.asdict(self) | {"categories": self.categories}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> JudgeCard:
        """Read ``judge.json`` from ``folder`` (or the file itself), checking its fields."""
        path = Path(folder)
        path = path / JUDGE_CARD if path.is_dir() else path
        if not path.is_file():
            raise DataError(str(path), None, JUDGE_CARD, "a judge.json written by `judgeforge train`", "missing file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(str(path), error.lineno, "<json>", "valid JSON", error.msg) from error
        known = {f.name for f in dataclasses.fields(cls)}
        for name in ("base_model", "prompt_template", "verdict_words"):
            if name not in data:
                raise DataError(str(path), None, name, "a value", None)
        words = data["verdict_words"]
        if not isinstance(words, dict) or not all(isinstance(v, list) and len(v) == 2 for v in words.values()):
            raise DataError(str(path), None, "verdict_words", "{category: [positive, negative]}", words)
        return cls(**{k: v for k, v in data.items() if k in known})
