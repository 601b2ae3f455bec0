"""Reports of an evaluation run: Markdown and HTML tables in the paper's shape, plots, CSV, W&B.

``judgeforge report DIR`` reads ``DIR/results.jsonl`` (and ``run.json`` when present), computes
every metric with :mod:`evaluation.metrics`, and writes into ``DIR``:

* ``report.md`` and ``report.html``: the headline table (every judge, overall F1 with its 95%
  bootstrap interval, and whether it beats the reference judges), F1 per model x prompt, F1 per
  category, the second-level change per reviewed judge, fine-tuned vs prompted, agreement across
  repeats, and coverage (invalid / refusal / error) per category;
* ``metrics.csv`` (one row per judge x category, every metric, a ``notes`` column giving the reason
  of each NaN) and ``second_level.csv``;
* ``f1_heatmap.png`` (model x prompt), ``f1_by_category.png`` and, when some judge gives
  P(positive), ``reliability.png``.

The reference judges (``reference/...``) are the honest floors: they are marked in every table, and
the headline says for each judge whether it beats them. A cell that has no number says why (a
numbered note under its table); no table holds an empty or NaN cell.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.metric_rows import compute_metric_rows, compute_second_level_rows
from evaluation.metrics import ALL
from evaluation.plots import plot_categories, plot_heatmap, plot_reliability
from evaluation.records import JudgeName, JudgmentRecord, MetricRow, RunInfo
from evaluation.report_wandb import log_report
from evaluation.store import read_records
from evaluation.tables import Report, Table, f1_cell, is_missing, number_cell, percent_cell
from evaluation.transfer import transfer_table, wants_transfer_table


__all__ = ["Report", "Table", "build_tables", "read_run_info", "write_report"]

logger = logging.getLogger(__name__)

FLOOR = registry.floor_kind()
_KIND_ORDER = registry.report_order()
_CSV_SKIP = {"reasons"}


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
    prompted = [r for r in _overall(rows) if r.kind == "prompted"]
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
    configured = [j for j in run_info.judges if j.get("kind") == "second_level"]
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
    prompted = [r for r in overall if r.kind == "prompted" and not is_missing(r["f1"])]
    for row in [r for r in overall if r.kind == "tuned"]:
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


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 6)
    return value


def _write_csv(rows: Sequence[MetricRow], path: Path) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k not in _CSV_SKIP]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns + ["notes"])
        writer.writeheader()
        for row in rows:
            notes = "; ".join(f"{k}: {v}" for k, v in sorted(row.get("reasons", {}).items()))
            writer.writerow({**{k: _csv_value(row.get(k)) for k in columns}, "notes": notes})
    return path


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;
margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child
{text-align:left}thead{background:#f3f3f3}.notes{font-size:.85em;color:#555}img{max-width:100%;margin:1em 0}"""


def _summary_lines(run_info: RunInfo, records: Sequence[JudgmentRecord]) -> list[str]:
    data = run_info.data
    counts = data.get("counts", {})
    unknown = "?"
    lines = [
        f"Run **{run_info.name or unknown}**: {len(records)} judgments, "
        f"{len({r.judge for r in records})} judges, split `{data.get('split', unknown)}`, "
        f"repeats {_or(run_info.repeats)}, seed {_or(run_info.seed)}.",
    ]
    if counts:
        lines.append("Examples per category: " + ", ".join(f"{c} {n}" for c, n in counts.items()) + ".")
    if counts and run_info.repeats:
        expected = sum(counts.values()) * int(run_info.repeats)
        per_judge: dict[str, int] = {}
        for r in records:
            per_judge[r.judge] = per_judge.get(r.judge, 0) + 1
        short = {j: n for j, n in sorted(per_judge.items()) if n < expected}
        if short:
            lines.append(
                "Incomplete judges (resume with the same `judgeforge eval` command): "
                + ", ".join(f"{j} {n} of {expected}" for j, n in short.items())
                + "."
            )
    finished = run_info.finished
    if finished:
        lines.append(
            f"Last run: judged {finished.get('judged', 0)}, invalid {finished.get('invalid', 0)}, refusal "
            f"{finished.get('refusal', 0)}, error {finished.get('error', 0)}, skipped {finished.get('skipped', 0)}, "
            f"resumed {finished.get('resumed', 0)}."
        )
    return lines


def _or(value: Any) -> Any:
    return "?" if value is None else value


def read_run_info(folder: Path) -> RunInfo:
    """``run.json`` of a run folder (a folder without one is named after itself)."""
    run_file = folder / "run.json"
    if not run_file.is_file():
        return RunInfo(name=folder.name)
    return RunInfo.from_dict(json.loads(run_file.read_text("utf-8")))


def write_report(run_dir: str | Path, *, wandb_project: str | None = None) -> Report:
    """Write the report files of a run folder (and log them to W&B when a project is given).

    Returns:
        The :class:`Report`: its tables and the paths written (report.md, report.html, metrics.csv,
        second_level.csv and the plots).
    """
    folder = Path(run_dir)
    records = read_records(folder)
    run_info = read_run_info(folder)
    n_boot, seed = run_info.boot, run_info.report_seed
    rows = compute_metric_rows(records, n_boot=n_boot, seed=seed)
    sl_rows = compute_second_level_rows(records, n_boot=n_boot, seed=seed)
    tables = build_tables(rows, sl_rows, run_info)
    if wants_transfer_table(run_info.data):
        tables.insert(1, transfer_table(records, run_info.data, n_boot=n_boot, seed=seed))
    written = [_write_csv(rows, folder / "metrics.csv")]
    if sl_rows:
        written.append(_write_csv(sl_rows, folder / "second_level.csv"))
    plots = {
        "F1 by model × prompt": plot_heatmap(rows, folder / "f1_heatmap.png"),
        "F1 by category": plot_categories(rows, folder / "f1_by_category.png"),
        "Reliability diagram": plot_reliability(records, folder / "reliability.png"),
    }
    plot_notes = {
        "F1 by model × prompt": "no prompted judges in this run",
        "F1 by category": "no categories",
        "Reliability diagram": "no judge in this run gives P(positive)",
    }
    summary = _summary_lines(run_info, records)
    title = run_info.name or folder.name
    md = [f"# Judge evaluation: {title}", "", *summary, ""]
    md += [t.to_markdown() for t in tables]
    md += ["## Plots", ""]
    for name, path in plots.items():
        md.append(f"![{name}]({path.name})" if path else f"{name}: not drawn ({plot_notes[name]}).")
        md.append("")
    (folder / "report.md").write_text("\n".join(md), "utf-8")
    body = [f"<h1>Judge evaluation: {html.escape(str(title))}</h1>"]
    body += [f"<p>{html.escape(line.replace('**', ''))}</p>" for line in summary]
    body += [t.to_html() for t in tables]
    body.append("<h2>Plots</h2>")
    for name, path in plots.items():
        body.append(
            f'<figure><img src="{path.name}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}</figcaption>'
            "</figure>"
            if path
            else f"<p>{html.escape(name)}: not drawn ({html.escape(plot_notes[name])}).</p>"
        )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>Judge evaluation</title><style>{_CSS}</style>"
    (folder / "report.html").write_text(page + "</head><body>" + "\n".join(body) + "</body></html>\n", "utf-8")
    written = [folder / "report.md", folder / "report.html", *written, *[p for p in plots.values() if p]]
    if wandb_project:
        log_report(wandb_project, folder, run_info, rows, tables, plots)
    return Report(tables=tables, paths=written, rows=rows)
