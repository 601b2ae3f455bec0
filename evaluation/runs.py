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

import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evaluation import registry
from evaluation.distributed import Unit, assign, current_ranks, example_cost, model_size
from evaluation.judges import JudgeResult, build_judge
from evaluation.plan import Cell, JudgeEntry, check_recipe, expand_judges, plan, reviewer_name
from evaluation.records import JudgmentRecord, RunInfo
from evaluation.robustness import attack_fields, attacked_copies
from evaluation.run_data import RunData, load_run_data
from evaluation.run_folder import (
    RANK_FIELDS,
    RUN_FILE,
    RunSummary,
    already_done,
    check_previous,
    merge_summaries,
    resolved_name,
    spec_view,
    write_run_file,
)
from evaluation.run_recipe import BEST, RunRecipe, RunRecipeError, load_run_recipe
from evaluation.scale import ScaleDown
from evaluation.second_level import best_prompted
from evaluation.store import RESULTS_FILE, ResultStore, record_key
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

    def judge_kwargs(self, entry: JudgeEntry, category: str) -> dict[str, Any]:
        prompt = entry.spec.prompt
        return {"exemplars": self.exemplars(category)} if prompt == "few_shot" else {}

    # -- the plan's units (evaluation.distributed splits them across processes) -------------------

    def _repeats(self, unit: Unit) -> list[int]:
        return list(range(self.recipe.repeats)) if unit.repeat is None else [unit.repeat]

    def clean_todo(self, entry: JudgeEntry, unit: Unit) -> list[dict]:
        """The unit's unjudged clean examples, once each (a unit of every repeat is computed once)."""
        return self.missing_in_any(entry, unit.category, self._repeats(unit))

    def attacked_todo(self, entry: JudgeEntry, unit: Unit) -> list[dict]:
        """The suite's copies the unit owns: its category's, in repeat 0 (or the unit of every repeat)."""
        return self.missing_attacked(entry, unit.category) if unit.repeat in (None, 0) else []

    def unit_pending(self, entry: JudgeEntry, unit: Unit) -> int:
        clean = sum(len(self.missing(entry, unit.category, r)) for r in self._repeats(unit))
        return clean + len(self.attacked_todo(entry, unit))

    def units(self, entry: JudgeEntry, position: int, computed_once: bool) -> list[Unit]:
        """The judge's units with work left, each with its estimated cost (examples x tokens x model size)."""
        size = model_size(entry.spec)
        reference = entry.kind == registry.REFERENCE
        repeats: list[int | None] = [None] if computed_once else list(range(self.recipe.repeats))
        units = []
        for c, name in enumerate(self.categories):
            for repeat in repeats:
                unit = Unit(entry.name, name, repeat, 0.0, (position, c, repeat or 0), reference)
                todo = self.clean_todo(entry, unit) + self.attacked_todo(entry, unit)
                if todo:
                    cost = size * sum(example_cost(e, entry.spec) for e in todo)
                    units.append(dataclasses.replace(unit, cost=cost))
        return units

    def _build(self, entry: JudgeEntry, pending: int, build: Callable[[], Any]) -> Any:
        """The judge, or None with its pending work skipped and counted (one judge failing skips only it)."""
        self.bar.set_postfix_str(entry.name)
        try:
            return build()
        except Exception as error:  # noqa: BLE001 (process edge)
            logger.error("cannot build judge %s: %s: %s", entry.name, type(error).__name__, error)
            self.summary.skip(pending, f"{entry.name} could not be built ({type(error).__name__}: {error})")
            self.bar.update(pending)
            return None

    def run_first_level(self, entry: JudgeEntry, units: Sequence[Unit]) -> None:
        pending = sum(self.unit_pending(entry, u) for u in units)
        if not pending:
            return
        judge = self._build(entry, pending, lambda: build_judge(entry.spec, train_examples=self.data.train))
        if judge is None:
            return
        # A tuned judge answers only the categories it was tuned on (e.g. one tuned on GPTFuzz alone, in a run
        # of several categories): the rest are skipped and counted, not judged with words it never learnt.
        tuned_on = getattr(judge, "verdict_words", None) if entry.kind == registry.TUNED else None
        judged = [u for u in units if not tuned_on or u.category in tuned_on]
        for unit in units:
            if unit not in judged:
                left = self.unit_pending(entry, unit)
                self.summary.skip(left, f"{entry.name} was not tuned on {unit.category}")
                self.bar.update(left)
        for unit in judged:
            name, category, repeats = unit.category, self.categories[unit.category], self._repeats(unit)
            kwargs = self.judge_kwargs(entry, name)
            if unit.repeat is None:  # computed once, recorded for every repeat
                todo = sorted(self.clean_todo(entry, unit), key=lambda e: str(e["id"]))
                for batch in _chunks(todo, entry.spec.batch_size):
                    results = _safe_judge(judge, batch, category, 0, **kwargs)
                    self.write([_record(entry, res, ex, name, r) for r in repeats for res, ex in zip(results, batch)])
                continue
            for batch in _chunks(self.missing(entry, name, unit.repeat), entry.spec.batch_size):
                results = _safe_judge(judge, batch, category, unit.repeat, **kwargs)
                self.write([_record(entry, res, ex, name, unit.repeat) for res, ex in zip(results, batch)])
        for unit in judged:  # the suite's copies, after every clean verdict
            kwargs = self.judge_kwargs(entry, unit.category)
            for batch in _chunks(self.attacked_todo(entry, unit), entry.spec.batch_size):
                results = _safe_judge(judge, batch, self.categories[unit.category], 0, **kwargs)
                self.write([_record(entry, res, ex, unit.category, 0) for res, ex in zip(results, batch)])
        del judge
        gc.collect()

    def run_second_level(self, entry: JudgeEntry, first: JudgeEntry, units: Sequence[Unit]) -> None:
        pending = sum(self.unit_pending(entry, u) for u in units)
        if not pending:
            return
        stored = {record_key(r): r for r in self.store.records() if r["judge"] == first.name}

        def build() -> Any:
            from evaluation.second_level import SecondLevelJudge

            return SecondLevelJudge(build_judge(first.spec, train_examples=self.data.train), entry.spec)

        judge = self._build(entry, pending, build)
        if judge is None:
            return
        for unit in units:
            name, category = unit.category, self.categories[unit.category]
            kwargs = self.judge_kwargs(first, name)
            # A greedy review of a first judge computed once is the same in every repeat: reviewed once.
            written = self._repeats(unit)
            repeat = unit.repeat or 0
            todo = []
            for example in self.clean_todo(entry, unit):
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
                self.write([_record(entry, res, ex, name, r) for r in written for res, ex in zip(results, examples)])
        del judge
        gc.collect()


def _result_from_record(record: dict[str, Any]) -> JudgeResult:
    names = {f.name for f in dataclasses.fields(JudgeResult)}
    return JudgeResult(**{k: v for k, v in record.items() if k in names})


def _with_run_options(recipe: RunRecipe, data: RunData) -> list[JudgeEntry]:
    """The recipe's judges, with the run's seed and the data's field budget where the backend takes them."""
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
    return entries


def run_eval(
    recipe: RunRecipe,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
) -> RunSummary:
    """Run ``recipe`` into ``out_dir`` (resuming what a previous run there left undone).

    Under ``accelerate launch`` each process runs its share of the plan (:mod:`evaluation.distributed`)
    into its own store file; rank 0 finishes ``run.json`` once every rank is done.

    Args:
        recipe: the parsed run recipe, ready to run (scale-down, if any, already applied:
            :class:`evaluation.scale.ScaleDown`).
        out_dir: the run folder (``results.jsonl``, one ``results.rank-<r>.jsonl`` per other rank, ``run.json``).
        data_root: folder that relative source paths of a data recipe are read from.

    Returns:
        The :class:`RunSummary` of the whole run on rank 0, of its own share on the other ranks.
    """
    ranks = current_ranks()
    check_recipe(recipe)
    data = load_run_data(recipe, data_root=data_root)
    entries = _with_run_options(recipe, data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    with contextlib.ExitStack() as stack:
        if not ranks.main:
            ranks.wait()  # rank 0 holds the lock and has repaired every file
        store = stack.enter_context(ResultStore.open(out, rank=ranks.rank))
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
        if ranks.main:
            write_run_file(run_file, payload)
            ranks.wait()
        summary = RunSummary(name=recipe.name, store=str(store.path))
        runner = _Runner(recipe, data, store, summary, None)
        summary.resumed = already_done(store, entries, data, recipe, choices, runner.attacked)
        first_level = [e for e in entries if e.kind != registry.SECOND_LEVEL]
        units = [u for i, e in enumerate(first_level) for u in runner.units(e, i, e.deterministic())]
        mine = assign(units, ranks.world)[ranks.rank]
        by_name = {e.name: e for e in first_level}
        work = sum(runner.unit_pending(by_name[u.judge], u) for u in mine)
        desc = f"eval {recipe.name}" + (f" [rank {ranks.rank}/{ranks.world}]" if ranks.world > 1 else "")
        bar = tqdm(total=summary.resumed + work, initial=summary.resumed, desc=desc, unit="judgment",
                   dynamic_ncols=True, position=ranks.rank)  # fmt: skip
        runner.bar = bar
        spent: dict[str, tuple[float, float]] = {}  # per judge: seconds busy, predicted cost (the cost model's check)

        def timed(name: str, units: list[Unit], work: Callable[[list[Unit]], None]) -> None:
            started = time.monotonic()
            work(units)
            if units:
                spent[name] = (round(time.monotonic() - started, 2), round(sum(u.cost for u in units), 1))

        try:
            for entry in first_level:
                timed(entry.name, [u for u in mine if u.judge == entry.name], partial(runner.run_first_level, entry))
            first_level_busy = sum(seconds for seconds, _ in spent.values())
            ranks.wait()  # every first-level verdict is stored before any review or choice
            store.refresh()
            prompted = [e.name for e in first_level if e.kind == registry.PROMPTED]
            reviews = []
            for entry in [e for e in entries if e.kind == registry.SECOND_LEVEL]:
                target = entry.reviews
                if target == BEST:
                    target = choices.get(entry.name) or best_prompted(store.records(), prompted)
                    if ranks.main and choices.get(entry.name) != target:
                        logger.info("second level %s reviews the best prompted judge: %s", entry.name, target)
                    choices[entry.name] = target
                resolved = dataclasses.replace(
                    entry, spec=dataclasses.replace(entry.spec, name=resolved_name(entry, target)), reviews=target
                )
                reviews.append((resolved, by_name[target]))
            if ranks.main and choices:
                payload.second_level_choice = choices
                write_run_file(run_file, payload)
            units = [
                u
                for i, (entry, first) in enumerate(reviews)
                for u in runner.units(entry, len(first_level) + i, entry.deterministic() and first.deterministic())
            ]
            mine_reviews = assign(units, ranks.world)[ranks.rank]
            bar.total += sum(runner.unit_pending(entry, u) for entry, _ in reviews for u in mine_reviews
                             if u.judge == entry.name)  # fmt: skip
            bar.refresh()
            for entry, first in reviews:
                units = [u for u in mine_reviews if u.judge == entry.name]
                timed(entry.name, units, partial(runner.run_second_level, entry, first))
        finally:
            bar.close()
        share = {
            **dataclasses.asdict(summary),
            "rank": ranks.rank,
            "busy_s": round(sum(seconds for seconds, _ in spent.values()), 2),
            "first_level_busy_s": round(first_level_busy, 2),
            "cost": round(sum(u.cost for u in mine + mine_reviews), 1),
            "units": len(mine) + len(mine_reviews),
            "judges": {name: {"busy_s": seconds, "cost": cost} for name, (seconds, cost) in spent.items()},
        }
        ranks.wait()
        shares = ranks.gather(share)
        if not ranks.main:
            return summary
        store.refresh()
        summary = merge_summaries(shares, recipe.name)
        summary.store, summary.total = str(out / RESULTS_FILE), len(store)
        summary.ranks = [{k: part[k] for k in RANK_FIELDS} for part in shares]
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
        The summary line and the next command (empty on ranks other than 0).
    """
    recipe = (scale or ScaleDown()).apply(load_run_recipe(recipe_path))
    summary = run_eval(recipe, out_dir, data_root=data_root)
    if not current_ranks().main:
        return ""  # rank 0 prints the whole run's line
    return summary.line() + f"\nnext: judgeforge report {out_dir}"
