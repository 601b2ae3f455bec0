"""The tables of a report, built from metric rows: pure, no I/O (:mod:`evaluation.report` writes them).

The headline (every judge against the reference judges, the honest floors), F1 per model x prompt and
per category, coverage, the second-level change, tuned vs prompted, agreement across repeats and,
when the data mixes or holds out sources, the transfer table. Judge kinds are ordered and the floor
is named by the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.metrics import ALL
from evaluation.records import JudgeName, MetricRow, RunInfo
from evaluation.tables import Table, f1_cell, is_missing, number_cell, percent_cell


__all__ = ["FLOOR", "build_tables"]


FLOOR = registry.floor_kind()
_KIND_ORDER = registry.report_order()


def _display(row: MetricRow) -> str:
    return f"{row.judge} (floor)" if row.kind == FLOOR else row.judge


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def _overall(rows: Sequence[MetricRow]) -> list[dict[str, Any]]:
    out = [r for r in rows if r.category == ALL]
    return sorted(out, key=lambda r: (_KIND_ORDER.get(r.kind, 9), -(r["f1"] if not is_missing(r["f1"]) else -1)))


def _floor_f1(rows: Sequence[MetricRow]) -> tuple[float, str]:
    floors = [r for r in _overall(rows) if r.kind == FLOOR and not is_missing(r["f1"])]
    if not floors:
        return math.nan, ""
    best = max(floors, key=lambda r: r["f1"])
    return best["f1"], best["judge"]


def _headline(rows: Sequence[MetricRow], deterministic: dict[str, bool]) -> Table:
    floor, floor_name = _floor_f1(rows)
    intro = (
        "Every judge over all categories. F1 counts an invalid output, a refusal or a backend error as a wrong "
        "answer; F1 (valid) scores only the outputs with a verdict, and coverage is their share. "
        "Reference judges (floor) are the honest floors: a judge that cannot beat them is not worth its compute."
    )
    table = Table(
        "headline",
        "Headline: every judge, all categories",
        [
            "judge",
            "kind",
            "F1 [95% CI]",
            "beats floors",
            "precision",
            "recall",
            "F1 (valid)",
            "coverage",
            "invalid",
            "refusal",
            "error",
            "κ",
            "MCC",
            "AUROC",
            "n",
        ],  # fmt: skip
        intro=intro,
    )
    for row in _overall(rows):
        if row.kind == FLOOR:
            beats = "floor"
        elif is_missing(floor):
            beats = table.note("beats floors: no reference judge with a defined F1 in this run")
        elif is_missing(row["f1"]):
            beats = table.note("beats floors: this judge's F1 is undefined")
        else:
            beats = f"{'yes' if row['f1'] > floor else 'NO'} (vs {floor_name} {floor:.3f})"
        table.rows.append(
            [
                _display(row),
                row.kind,
                f1_cell(table, row),
                beats,
                number_cell(table, row, "precision"),
                number_cell(table, row, "recall"),
                number_cell(table, row, "f1_valid"),
                percent_cell(table, row, "coverage"),
                percent_cell(table, row, "invalid_rate"),
                percent_cell(table, row, "refusal_rate"),
                percent_cell(table, row, "error_rate"),
                number_cell(table, row, "kappa"),
                number_cell(table, row, "mcc"),
                number_cell(table, row, "auroc"),
                f"{row['n_examples']} × {row['repeats']}"
                + (" (computed once)" if deterministic.get(row.judge) else ""),
            ]
        )
    return table


def _model_prompt(rows: Sequence[MetricRow]) -> Table:
    prompted = [r for r in _overall(rows) if r.kind == registry.PROMPTED]
    models = list(dict.fromkeys(r.model for r in prompted))
    prompts = list(dict.fromkeys(r.prompt for r in prompted))
    table = Table(
        "by_model_prompt",
        "F1 by model × prompt (prompted judges, all categories)",
        ["model"] + prompts,
        intro="F1 with its 95% bootstrap interval (examples resampled by group, repeats together).",
    )
    cells = {(r.model, r.prompt): r for r in prompted}
    for model in models:
        line = [model]
        for prompt in prompts:
            row = cells.get((model, prompt))
            line.append(f1_cell(table, row) if row else table.note("this model × prompt was not in the run recipe"))
        table.rows.append(line)
    if not prompted:
        table.headers = ["model", "F1"]
        table.rows.append(["(none)", table.note("the run recipe has no prompted judges")])
    return table


def _by_category(rows: Sequence[MetricRow], categories: list[str]) -> Table:
    table = Table("by_category", "F1 by category", ["judge"] + categories)
    cells = {(r.judge, r.category): r for r in rows}
    for row in _overall(rows):
        line = [_display(row)]
        for category in categories:
            cell = cells.get((row.judge, category))
            line.append(f1_cell(table, cell) if cell else table.note("no results of this judge on this category"))
        table.rows.append(line)
    return table


def _coverage(rows: Sequence[MetricRow], categories: list[str]) -> Table:
    table = Table(
        "coverage",
        "Coverage by category (invalid / refusal / error)",
        ["judge"] + categories,
        intro="Share of outputs with a verdict; in brackets the shares of invalid outputs, judge refusals and "
        "backend errors.",
    )
    cells = {(r.judge, r.category): r for r in rows}
    for row in _overall(rows):
        line = [_display(row)]
        for category in categories:
            cell = cells.get((row.judge, category))
            if not cell:
                line.append(table.note("no results of this judge on this category"))
                continue
            line.append(
                f"{100 * cell['coverage']:.0f}% ({100 * cell['invalid_rate']:.0f} / "
                f"{100 * cell['refusal_rate']:.0f} / {100 * cell['error_rate']:.0f})"
            )
        table.rows.append(line)
    return table


def _second_level(sl_rows: Sequence[MetricRow], run_info: RunInfo) -> Table:
    table = Table(
        "second_level",
        "Second-level review: change per reviewed judge",
        [
            "second-level judge",
            "reviews",
            "reviewer",
            "F1 before",
            "F1 after",
            "change [95% CI]",
            "flips",
            "fixed",
            "broke",
            "rescued (right)",
            "unreadable reviews",
            "n",
        ],  # fmt: skip
        intro="Same examples before and after review. A flip changes one label into the other: it fixed a "
        "verdict when the first label was wrong, it broke one when it was right. A first answer without a "
        "verdict that the review labels was rescued. An unreadable review leaves the first verdict in place.",
    )
    for row in [r for r in sl_rows if r.category == ALL]:
        change = row["f1_change"]
        if is_missing(change):
            cell = table.note(f"F1 change: {row.reason('f1_change', 'undefined')}")
        elif is_missing(row["f1_change_ci_low"]):
            cell = f"{change:+.3f} " + table.note(f"95% interval: {row.reason('f1_change_ci_low', '')}")
        else:
            cell = f"{change:+.3f} [{row['f1_change_ci_low']:+.3f}, {row['f1_change_ci_high']:+.3f}]"
        table.rows.append(
            [
                row.judge,
                row.get("reviews") or JudgeName.parse(row.judge).first,
                row.model,
                number_cell(table, row, "f1_before"),
                number_cell(table, row, "f1_after"),
                cell,
                str(row["flips"]),
                str(row["fixed"]),
                str(row["broken"]),
                f"{row['rescued']} ({row['rescued_right']})",
                str(row["unreadable_reviews"]),
                str(row["n"]),
            ]
        )
    configured = [j for j in run_info.judges if j.get("kind") == registry.SECOND_LEVEL]
    done = {r.judge for r in sl_rows}
    for judge in configured:
        if run_info.resolved_name(judge["name"]) in done:  # `best` resolved at run time
            continue
        why = "; ".join(run_info.skipped_reasons()) or "not run yet"
        missing = table.note(f"configured but no results ({why})")
        table.rows.append([judge["name"], judge.get("reviews", ""), judge.get("model", "")] + [missing] * 9)
    if not table.rows:
        table.rows.append(["(none)", "-", "-"] + [table.note("the run recipe has no second-level review")] * 9)
    return table


def _same_model(a: str, b: str) -> bool:
    return a == b or Path(a.rstrip("/")).name == Path(b.rstrip("/")).name


def _tuned_vs_prompted(rows: Sequence[MetricRow], base_models: dict[str, str]) -> Table:
    overall = _overall(rows)
    floor, floor_name = _floor_f1(rows)
    table = Table(
        "tuned_vs_prompted",
        "Fine-tuned vs prompted",
        [
            "tuned judge",
            "F1 [95% CI]",
            "base model",
            "best prompted (same base)",
            "its F1 [95% CI]",
            "difference",
            "best floor",
        ],  # fmt: skip
        intro="Each tuned judge against the best prompted configuration of the model it was tuned from, and "
        "the best reference judge, on the same examples.",
    )
    prompted = [r for r in overall if r.kind == registry.PROMPTED and not is_missing(r["f1"])]
    for row in [r for r in overall if r.kind == registry.TUNED]:
        base = base_models.get(row.judge, "")
        same = [r for r in prompted if base and _same_model(r.model, base)]
        best = max(same, key=lambda r: r["f1"]) if same else None
        no_floor = is_missing(floor)
        floor_cell = f"{floor_name} {floor:.3f}" if not no_floor else table.note("no reference judge in this run")
        if best is None:
            why = "no base model recorded in judge.json" if not base else f"no prompted judge of {base} in this run"
            missing = table.note(why)
            table.rows.append([row.judge, f1_cell(table, row), base or missing, missing, missing, missing, floor_cell])
            continue
        diff = row["f1"] - best["f1"] if not is_missing(row["f1"]) else math.nan
        diff_cell = f"{diff:+.3f}" if not is_missing(diff) else table.note("the tuned judge's F1 is undefined")
        table.rows.append(
            [row.judge, f1_cell(table, row), base, best.judge, f1_cell(table, best), diff_cell, floor_cell]
        )
    if not table.rows:
        table.rows.append(["(none)"] + [table.note("the run recipe has no tuned judges (`tuned:`)")] * 6)
    return table


def _agreement(rows: Sequence[MetricRow], deterministic: dict[str, bool]) -> Table:
    table = Table(
        "agreement",
        "Agreement across repeats",
        ["judge", "repeats", "all repeats agree", "Fleiss' κ", "F1 mean ± sd over repeats"],
        intro="Answers compared across repeats are the label or 'no verdict'. A deterministic judge (greedy "
        "local model, reference judge) is computed once and recorded for every repeat, so it agrees fully.",
    )
    for row in _overall(rows):
        mean, sd = row.get("f1_repeat_mean"), row.get("f1_repeat_std")
        if is_missing(mean):
            spread = table.note(f"F1 over repeats: {row.reason('f1_repeat_mean', 'undefined')}")
        elif is_missing(sd):
            spread = f"{mean:.3f} " + table.note(f"sd: {row.reason('f1_repeat_std', 'undefined')}")
        else:
            spread = f"{mean:.3f} ± {sd:.3f}"
        repeats = f"{row['repeats']}" + (" (computed once)" if deterministic.get(row.judge) else "")
        table.rows.append(
            [
                _display(row),
                repeats,
                percent_cell(table, row, "percent_agreement"),
                number_cell(table, row, "fleiss_kappa"),
                spread,
            ]
        )
    return table


def _computed_once(rows: Sequence[MetricRow], recorded: dict[str, bool]) -> dict[str, bool]:
    """Per judge in ``rows``, whether it was computed once: a review only if its reviewer and first judge were.

    The run records a second-level entry under its recipe name (``best+review:M``); its results carry
    the resolved one (``m/score+review:M``).
    """
    once = dict(recorded)
    for name in {r.judge for r in rows} - set(recorded):
        parsed = JudgeName.parse(name)
        same_reviewer = [k for k in recorded if parsed.is_review and JudgeName.parse(k).reviewer == parsed.reviewer]
        reviews = [recorded[k] for k in same_reviewer]
        once[name] = bool(reviews) and all(reviews) and recorded.get(parsed.first, False)
    return once


def _as_rows(rows: Sequence[MetricRow | Mapping[str, Any]]) -> list[MetricRow]:
    return [r if isinstance(r, MetricRow) else MetricRow.from_dict(r) for r in rows]


def build_tables(
    rows: Sequence[MetricRow | Mapping[str, Any]],
    sl_rows: Sequence[MetricRow | Mapping[str, Any]],
    run_info: RunInfo | Mapping[str, Any],
) -> list[Table]:
    """Every report table from metric rows (:func:`evaluation.metrics.compute_metric_rows`)."""
    rows, sl_rows = _as_rows(rows), _as_rows(sl_rows)
    info = run_info if isinstance(run_info, RunInfo) else RunInfo.from_dict(run_info)
    categories = sorted({r.category for r in rows} - {ALL})
    deterministic = _computed_once(rows, info.deterministic())
    return [
        _headline(rows, deterministic),
        _model_prompt(rows),
        _by_category(rows, categories),
        _second_level(sl_rows, info),
        _tuned_vs_prompted(rows, info.base_models()),
        _agreement(rows, deterministic),
        _coverage(rows, categories),
    ]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
