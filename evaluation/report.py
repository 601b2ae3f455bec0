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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.metric_rows import compute_metric_rows, compute_second_level_rows
from evaluation.plots import plot_categories, plot_heatmap, plot_reliability
from evaluation.records import JudgmentRecord, MetricRow, RunInfo
from evaluation.report_tables import build_tables
from evaluation.report_wandb import log_report
from evaluation.robustness import compute_robustness_rows, is_attacked, robustness_table
from evaluation.store import read_records
from evaluation.tables import Report, Table
from evaluation.transfer import transfer_table, wants_transfer_table


__all__ = ["Report", "Table", "build_tables", "read_run_info", "write_report"]

logger = logging.getLogger(__name__)

_CSV_SKIP = {"reasons"}


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


def _summary_lines(run_info: RunInfo, records: Sequence[JudgmentRecord], attacked: int = 0) -> list[str]:
    data = run_info.data
    counts = data.get("counts", {})
    unknown = "?"
    lines = [
        f"Run **{run_info.name or unknown}**: {len(records)} judgments, "
        f"{len({r.judge for r in records})} judges, split `{data.get('split', unknown)}`, "
        f"repeats {_or(run_info.repeats)}, seed {_or(run_info.seed)}.",
    ]
    if attacked:
        lines.append(f"Robustness suite: {attacked} more judgments of attacked copies (their own table; no other).")
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
    everything = read_records(folder)
    records = [r for r in everything if not is_attacked(r)]  # every clean table; the suite's copies apart
    robust_rows = compute_robustness_rows([r.to_dict() for r in everything], per_category=True)
    run_info = read_run_info(folder)
    n_boot, seed = run_info.boot, run_info.report_seed
    rows = compute_metric_rows(records, n_boot=n_boot, seed=seed)
    sl_rows = compute_second_level_rows(records, n_boot=n_boot, seed=seed)
    tables = build_tables(rows, sl_rows, run_info)
    if wants_transfer_table(run_info.data):
        tables.insert(1, transfer_table(records, run_info.data, n_boot=n_boot, seed=seed))
    robust = robustness_table(robust_rows)
    if robust is not None:
        tables.insert(1, robust)
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
    summary = _summary_lines(run_info, records, attacked=len(everything) - len(records))
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
    return Report(tables=tables, paths=written, rows=rows, robustness=robust_rows)
