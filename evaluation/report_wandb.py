"""Log a report to Weights & Biases: every table, the metric rows, the plots and F1 per judge."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from evaluation.metrics import ALL
from evaluation.records import MetricRow, RunInfo
from evaluation.tables import Table, is_missing


__all__ = ["log_report"]

_CSV_SKIP = {"reasons"}


def _csv_value(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 6)
    return value


def log_report(
    project: str,
    folder: Path,
    run_info: RunInfo,
    rows: Sequence[MetricRow],
    tables: Sequence[Table],
    plots: dict[str, Path | None],
) -> None:
    """Log every table (under ``report/<key>``), the plots and a summary of F1 per judge to W&B."""
    import wandb

    config = {k: getattr(run_info, k) for k in ("name", "repeats", "seed", "categories", "data")}
    run = wandb.init(project=project, name=f"report-{run_info.name or folder.name}", dir=str(folder),
                     job_type="eval-report", config=config, reinit="finish_previous")  # fmt: skip
    try:
        for table in tables:
            run.log({f"report/{table.key}": wandb.Table(columns=table.headers, data=table.rows)})
        columns = [k for k in rows[0] if k not in _CSV_SKIP] if rows else []
        data = [[_csv_value(row.get(k)) if not isinstance(row.get(k), float) or not math.isnan(row[k]) else None
                 for k in columns] for row in rows]  # fmt: skip
        run.log({"report/metrics": wandb.Table(columns=columns, data=data)})
        for title, path in plots.items():
            if path:
                run.log({f"plots/{path.stem}": wandb.Image(str(path), caption=title)})
        for row in rows:
            if row.category == ALL and not is_missing(row["f1"]):
                run.summary[f"f1/{row.judge}"] = row["f1"]
                if not is_missing(row["f1_ci_low"]):
                    run.summary[f"f1_ci/{row.judge}"] = [row["f1_ci_low"], row["f1_ci_high"]]
    finally:
        run.finish()
