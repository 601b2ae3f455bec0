"""Run an evaluation recipe: every judge on every category, every repeat, into a resumable store.

``judgeforge eval RUN.yaml --out DIR`` calls :func:`run_eval_file`. The order of work:

1. Parse and check the recipe (:mod:`evaluation.run_recipe`): unknown keys, models, prompts,
   categories and tuned folders are refused before anything runs.
2. Load the data: the evaluated split (subsampled per category with ``limit``, stratified) and
   the train split (few-shot exemplars and the reference judges fit on it, never on the evaluated
   split).
3. Open the store in ``DIR`` (``results.jsonl``) and write ``run.json`` (the recipe, the judges,
   the data). A folder holding results of a different judge under the same name is refused.
4. Judge: reference judges, prompted judges, tuned judges, guards, then the second-level reviews
   (which read the first-level verdicts from the store). Keys already stored are skipped, so a
   rerun after a kill finishes the rest, and items stored as backend errors are judged again.
   Each batch is one judge call and one fsynced store write. A batch that raises is retried item
   by item, and an item that still raises is stored as ``error`` with its message; the run goes on.
5. Print one summary line: judged, invalid, refusal, error, skipped, resumed.

Repeats: repeat ``r`` runs with seed ``seed + r``. A deterministic judge (reference judges, and
greedy local models: see :meth:`JudgeEntry.deterministic`) is computed once per example and its
result recorded for every repeat, so the store always holds every repeat and the metrics treat all
judges alike; so is a greedy review of such a judge.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evaluation import registry
from evaluation.judges import JudgeResult, build_judge
from evaluation.metric_rows import compute_metric_rows
from evaluation.plan import Cell, JudgeEntry, check_recipe, expand_judges, plan, reviewer_name
from evaluation.records import JudgmentRecord, RunInfo
from evaluation.robustness import attack_fields, attacked_copies, is_attacked
from evaluation.run_data import RunData, load_run_data
from evaluation.run_folder import RUN_FILE, already_done, check_previous, resolved_name, spec_view, write_run_file
from evaluation.run_recipe import BEST, RunRecipe, RunRecipeError, load_run_recipe
from evaluation.scale import ScaleDown
from evaluation.store import ResultStore, record_key
from recipes.categories import Category, load_category


__all__ = [
    "RUN_FILE",
    "Cell",
    "RunRecipeError",
    "RunSummary",
    "check_recipe",
    "load_run_recipe",
    "plan",
    "reviewer_name",
    "run_eval",
    "run_eval_file",
]

logger = logging.getLogger(__name__)


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

    def line(self) -> str:
        """The one summary line a run ends with."""
        text = (
            f"{self.name}: judged {self.judged} (invalid {self.invalid}, refusal {self.refusal}, error {self.error}), "
            f"skipped {self.skipped}, resumed {self.resumed}; {self.total} judgments in {self.store}"
        )
        if self.skipped_reasons:
            text += " | skipped: " + "; ".join(f"{n} × {why}" for why, n in self.skipped_reasons.items())
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


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _safe_judge(judge: Any, batch: list[dict], category: Category, repeat: int, **kwargs: Any) -> list[JudgeResult]:
    """Judge a batch; a batch that raises is retried item by item, an item that raises is an ``error``.

    This is the process edge of one judge call, so the broad ``except`` is deliberate: a backend
    failure on one item must be recorded with its reason, not stop the run.
    """
    try:
        results = judge.judge(batch, category, repeat=repeat, **kwargs)
        ids = [str(e["id"]) for e in batch]
        if [str(r.example_id) for r in results] != ids:
            raise RuntimeError(f"{judge.name} returned results for {len(results)} items out of order or count")
        return results
    except Exception as error:  # noqa: BLE001
        if len(batch) == 1:
            message = f"{type(error).__name__}: {error}"
            logger.warning("%s failed on %s: %s", judge.name, batch[0]["id"], message)
            return [JudgeResult(str(batch[0]["id"]), None, "error", error=message)]
        out = []
        for i, example in enumerate(batch):
            item_kwargs = {k: ([v[i]] if k == "first_results" else v) for k, v in kwargs.items()}
            out += _safe_judge(judge, [example], category, repeat, **item_kwargs)
        return out


def _record(entry: JudgeEntry, result: JudgeResult, example: dict, category: str, repeat: int) -> JudgmentRecord:
    spec = entry.spec
    record = JudgmentRecord.from_result(
        result, judge=entry.name, kind=entry.kind, model=spec.model, prompt=spec.prompt, backend=spec.backend,
        category=category, example=example, repeat=repeat, reviews=entry.reviews,
    )  # fmt: skip
    record.extra.update(attack_fields(example))  # a perturbed copy of the robustness suite says so
    return record


class _Runner:
    """Holds the state of one run: recipe, data, store, progress bar, summary."""

    def __init__(self, recipe: RunRecipe, data: RunData, store: ResultStore, summary: RunSummary, bar: Any):
        self.recipe, self.data, self.store, self.summary, self.bar = recipe, data, store, summary, bar
        self.categories = {name: load_category(name, recipe.categories_dirs) for name in data.examples}
        # The robustness suite's perturbed copies, judged at repeat 0 by every first-level judge.
        self.attacked = attacked_copies(data.examples, self.categories, recipe.robustness)
        self._exemplars: dict[str, list[dict] | None] = {}

    def exemplars(self, category: str) -> list[dict] | None:
        """Few-shot exemplars from the train split (None: the category's own hand-written ones)."""
        if category not in self._exemplars:
            from recipes.builders import sample_exemplars

            chosen = sample_exemplars(self.data.train, category, self.recipe.few_shot, self.recipe.seed)
            if not chosen:
                logger.warning("no train examples of %s: few_shot shows the category's own exemplars", category)
            self._exemplars[category] = chosen or None
        return self._exemplars[category]

    def done(self, key: tuple[str, str, str, int]) -> bool:
        """Stored, and not a backend error (errors are judged again by a rerun)."""
        return key in self.store and not self.store.is_error(key)

    def missing(self, entry: JudgeEntry, category: str, repeat: int) -> list[dict]:
        return [e for e in self.data.examples[category] if not self.done((entry.name, category, str(e["id"]), repeat))]

    def missing_in_any(self, entry: JudgeEntry, category: str, repeats: Sequence[int]) -> list[dict]:
        """Examples missing in at least one of ``repeats``, once each (a judge computed once fills them all)."""
        return list({str(e["id"]): e for r in repeats for e in self.missing(entry, category, r)}.values())

    def write(self, records: list[JudgmentRecord]) -> None:
        written = [r for r in records if not self.done(r.key)]
        self.store.append(written)
        self.summary.count(written)
        self.bar.update(len(written))

    def missing_attacked(self, entry: JudgeEntry, category: str) -> list[dict]:
        """The suite's copies of ``category`` that ``entry`` has not judged (none for a second-level judge)."""
        if entry.kind == registry.SECOND_LEVEL:
            return []
        return [c for c in self.attacked.get(category, []) if not self.done((entry.name, category, str(c["id"]), 0))]

    def pending(self, entry: JudgeEntry) -> int:
        clean = sum(len(self.missing(entry, c, r)) for c in self.categories for r in range(self.recipe.repeats))
        return clean + sum(len(self.missing_attacked(entry, c)) for c in self.categories)

    def judge_kwargs(self, entry: JudgeEntry, category: str) -> dict[str, Any]:
        prompt = entry.spec.prompt
        return {"exemplars": self.exemplars(category)} if prompt == "few_shot" else {}

    def run_first_level(self, entry: JudgeEntry) -> None:
        pending = self.pending(entry)
        if not pending:
            return
        self.bar.set_postfix_str(entry.name)
        try:
            judge = build_judge(entry.spec, train_examples=self.data.train)
        except Exception as error:  # noqa: BLE001 (process edge: one judge failing to load skips only it)
            logger.error("cannot build judge %s: %s: %s", entry.name, type(error).__name__, error)
            self.summary.skip(pending, f"{entry.name} could not be built ({type(error).__name__}: {error})")
            self.bar.update(pending)
            return
        repeats = range(self.recipe.repeats)
        # A tuned judge answers only the categories it was tuned on (e.g. one tuned on GPTFuzz alone, in a run
        # of several categories): the rest are skipped and counted, not judged with words it never learnt.
        tuned_on = getattr(judge, "verdict_words", None) if entry.kind == registry.TUNED else None
        for name, category in self.categories.items():
            if tuned_on and name not in tuned_on:
                left = sum(len(self.missing(entry, name, r)) for r in repeats) + len(
                    self.missing_attacked(entry, name)
                )
                self.summary.skip(left, f"{entry.name} was not tuned on {name}")
                self.bar.update(left)
                continue
            kwargs = self.judge_kwargs(entry, name)
            if entry.deterministic():
                todo = sorted(self.missing_in_any(entry, name, repeats), key=lambda e: str(e["id"]))
                for batch in _chunks(todo, entry.spec.batch_size):
                    results = _safe_judge(judge, batch, category, 0, **kwargs)
                    self.write([_record(entry, res, ex, name, r) for r in repeats for res, ex in zip(results, batch)])
                continue
            for repeat in repeats:
                for batch in _chunks(self.missing(entry, name, repeat), entry.spec.batch_size):
                    results = _safe_judge(judge, batch, category, repeat, **kwargs)
                    self.write([_record(entry, res, ex, name, repeat) for res, ex in zip(results, batch)])
        for name, category in self.categories.items():  # the suite's copies, after every clean verdict
            if tuned_on and name not in tuned_on:
                continue
            kwargs = self.judge_kwargs(entry, name)
            for batch in _chunks(self.missing_attacked(entry, name), entry.spec.batch_size):
                results = _safe_judge(judge, batch, category, 0, **kwargs)
                self.write([_record(entry, res, ex, name, 0) for res, ex in zip(results, batch)])
        del judge
        gc.collect()

    def run_second_level(self, entry: JudgeEntry, first: JudgeEntry) -> None:
        pending = self.pending(entry)
        if not pending:
            return
        self.bar.set_postfix_str(entry.name)
        stored = {record_key(r): r for r in self.store.records() if r["judge"] == first.name}
        try:
            from evaluation.second_level import SecondLevelJudge

            judge = SecondLevelJudge(build_judge(first.spec, train_examples=self.data.train), entry.spec)
        except Exception as error:  # noqa: BLE001 (process edge)
            logger.error("cannot build second-level judge %s: %s: %s", entry.name, type(error).__name__, error)
            self.summary.skip(pending, f"{entry.name} could not be built ({type(error).__name__}: {error})")
            self.bar.update(pending)
            return
        # A greedy review of a first judge computed once is the same in every repeat: review once.
        once = entry.deterministic() and first.deterministic()
        all_repeats = list(range(self.recipe.repeats))
        for name, category in self.categories.items():
            kwargs = self.judge_kwargs(first, name)
            for repeat in all_repeats[:1] if once else all_repeats:
                written = all_repeats if once else [repeat]
                todo = []
                for example in self.missing_in_any(entry, name, written):
                    previous = stored.get((first.name, name, str(example["id"]), repeat))
                    if previous is None:
                        self.summary.skip(len(written), f"no first-level verdict of {first.name} to review")
                        self.bar.update(len(written))
                    else:
                        todo.append((example, previous))
                for batch in _chunks(todo, entry.spec.batch_size):
                    examples = [example for example, _ in batch]
                    firsts = [_result_from_record(previous) for _, previous in batch]
                    results = _safe_judge(judge, examples, category, repeat, first_results=firsts, **kwargs)
                    records = [_record(entry, res, ex, name, r) for r in written for res, ex in zip(results, examples)]
                    self.write(records)
        del judge
        gc.collect()


def _result_from_record(record: dict[str, Any]) -> JudgeResult:
    names = {f.name for f in dataclasses.fields(JudgeResult)}
    return JudgeResult(**{k: v for k, v in record.items() if k in names})


def _best_prompted(records: list[dict[str, Any]], prompted: list[str]) -> str:
    """The prompted judge with the highest pooled headline F1 (ties: the earlier in the recipe)."""
    rows = compute_metric_rows([r for r in records if r["judge"] in prompted and not is_attacked(r)], n_boot=0)
    scores = {row["judge"]: row["f1"] for row in rows if row["category"] == "all"}

    def rank(name: str) -> tuple[float, int]:
        score = scores.get(name, math.nan)
        return (-score if not math.isnan(score) else 1.0), prompted.index(name)

    return min(prompted, key=rank)


def run_eval(
    recipe: RunRecipe,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
) -> RunSummary:
    """Run ``recipe`` into ``out_dir`` (resuming what a previous run there left undone).

    Args:
        recipe: the parsed run recipe, ready to run (scale-down, if any, already applied:
            :class:`evaluation.scale.ScaleDown`).
        out_dir: the run folder (``results.jsonl``, ``run.json``).
        data_root: folder that relative source paths of a data recipe are read from.

    Returns:
        The :class:`RunSummary` (its :meth:`RunSummary.line` is what the CLI prints).
    """
    check_recipe(recipe)
    data = load_run_data(recipe, data_root=data_root)
    entries = expand_judges(recipe)
    for i, entry in enumerate(entries):
        options = dict(entry.spec.options)
        changed = False
        backend, kind = registry.backend(entry.spec.backend), registry.judge_kind(entry.kind)
        if backend.takes_seed and "seed" not in options:
            options["seed"], changed = recipe.seed, True
        if kind.sees_data_budget and backend.takes_budget and data.budget and "budget" not in options:
            options["budget"], changed = dict(data.budget), True  # prompted judges see what tuned ones saw
        if changed:
            entries[i] = dataclasses.replace(entry, spec=dataclasses.replace(entry.spec, options=options))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    with ResultStore.open(out) as store:
        previous = check_previous(run_file, [spec_view(e) for e in entries], data.info)
        choices: dict[str, str] = dict(previous.get("second_level_choice", {}))
        payload = RunInfo(
            name=recipe.name,
            recipe=dataclasses.asdict(recipe),
            data=data.info,
            categories=list(data.examples),
            repeats=recipe.repeats,
            seed=recipe.seed,
            n_boot=recipe.n_boot,
            judges=[spec_view(e) for e in entries],
            second_level_choice=choices,
        )
        write_run_file(run_file, payload)
        summary = RunSummary(name=recipe.name, store=str(store.path))
        per_item = sum(len(v) for v in data.examples.values()) * recipe.repeats
        runner = _Runner(recipe, data, store, summary, None)
        copies = sum(len(v) for v in runner.attacked.values())
        total = per_item * len(entries) + copies * sum(e.kind != registry.SECOND_LEVEL for e in entries)
        summary.resumed = already_done(store, entries, data, recipe, choices, runner.attacked)
        bar = tqdm(
            total=total, initial=summary.resumed, desc=f"eval {recipe.name}", unit="judgment", dynamic_ncols=True
        )
        runner.bar = bar
        try:
            first_level = [e for e in entries if e.kind != registry.SECOND_LEVEL]
            for entry in first_level:
                runner.run_first_level(entry)
            prompted = [e.name for e in first_level if e.kind == registry.PROMPTED]
            by_name = {e.name: e for e in first_level}
            for entry in [e for e in entries if e.kind == registry.SECOND_LEVEL]:
                target = entry.reviews
                if target == BEST:
                    target = choices.get(entry.name) or _best_prompted(store.records(), prompted)
                    choices[entry.name] = target
                    payload.second_level_choice = choices
                    write_run_file(run_file, payload)
                    logger.info("second level %s reviews the best prompted judge: %s", entry.name, target)
                resolved = dataclasses.replace(
                    entry, spec=dataclasses.replace(entry.spec, name=resolved_name(entry, target)), reviews=target
                )
                runner.run_second_level(resolved, by_name[target])
        finally:
            bar.close()
        summary.total = len(store)
    payload.finished = {k: v for k, v in dataclasses.asdict(summary).items() if k != "skipped_reasons"}
    payload.finished["skipped_reasons"] = summary.skipped_reasons
    write_run_file(run_file, payload)
    return summary


def run_eval_file(
    recipe_path: str | Path,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    scale: ScaleDown | None = None,
) -> str:
    """Load a run recipe file, scale it down once, and run it (what ``judgeforge eval`` calls).

    Returns:
        The summary line and the next command.
    """
    recipe = (scale or ScaleDown()).apply(load_run_recipe(recipe_path))
    summary = run_eval(recipe, out_dir, data_root=data_root)
    return summary.line() + f"\nnext: judgeforge report {out_dir}"
