"""Judge a CSV or JSON Lines file of victim transcripts: the everyday use of a judge.

``judgeforge judge --judge MODEL_OR_DIR --prompt basic --category jailbreak --input chats.csv
--out verdicts.jsonl`` writes one record per input row: ``id``, ``label``, ``status``,
``p_positive`` (when the backend reads probabilities) and ``explanation`` (plus ``error`` when the
backend failed on that row, and the ``--keep-columns`` of the input, a name the verdict already
uses taking an ``input_`` prefix). Any registered backend judges (``--backend openai`` with
``--base-url`` for an OpenAI-compatible server; its key only from the environment).

The verdicts are a results store (:class:`evaluation.store.ResultStore`) keyed by ``id``: each
batch of ``--batch-size`` rows is one judge call and one fsynced write, so a killed run loses at
most that batch; running the same command again skips the ids already there (a torn last line is
dropped and counted) and finishes the rest. A ``.csv`` output is written whole from that store at
the end (``<out>.verdicts.jsonl`` holds the store), so it too resumes.

With ``--label-column``, the run ends with the judge's precision, recall, F1 with its 95%
interval, AUROC and coverage on the labelled rows, computed by :mod:`evaluation.metrics` (the
numbers every evaluation report uses), printed and written to ``<out>.metrics.json`` and
``<out>.report.md``.

Files are only ever written when they are this judge's own output: a sidecar ``<out>.meta.json``
records the judge (model, backend), prompt, category and the context and kept columns, and a
mismatch is refused with one line, as is an existing file without one (a CSV, anyone's notes),
``--out`` equal to ``--input``, and a second run on the same ``--out`` while one holds its lock. A
corrupt line in the middle of the store is refused with its line number (nothing is changed): it
cannot be a write cut short, and resuming past it would keep and count it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.judges import JudgeResult, JudgeSpec, build_judge
from evaluation.metrics import compute_binary_metrics
from evaluation.store import ResultStore, StoreLockedError, write_atomically
from evaluation.tables import is_missing
from evaluation.transcripts import Columns, Transcripts, read_transcripts
from recipes.categories import load_category
from recipes.prompts import load_template
from recipes.schema import DataError


__all__ = ["META_SUFFIX", "Outputs", "judge_file", "label_metrics", "meta_path", "spec_for"]

META_SUFFIX = ".meta.json"
_FORMAT = "judgeforge-verdicts/1"
_IDENTITY = ("judge", "backend", "prompt", "category", "context_column", "keep_columns")
_VERDICT_FIELDS = ("id", "label", "status", "p_positive", "explanation", "error")


def spec_for(
    judge: str | JudgeSpec,
    prompt: str = "basic",
    batch_size: int = 8,
    *,
    backend: str | None = None,
    options: dict[str, Any] | None = None,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
) -> JudgeSpec:
    """A spec for ``judge``: ``backend`` when given, else the one that recognises the name (guards), else ``hf``.

    The options a model name implies (a guard's kind) come first; ``options`` override them.
    """
    if isinstance(judge, JudgeSpec):
        return judge
    default = registry.judge_kind(registry.PROMPTED).backend
    recognised, implied = registry.backend_for_model(judge, default)
    chosen = backend or recognised
    if chosen != recognised:
        implied = {}
    return JudgeSpec(
        model=judge,
        prompt=prompt,
        backend=chosen,
        batch_size=batch_size,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        options=implied | dict(options or {}),
    )


def meta_path(out_path: str | Path) -> Path:
    """The sidecar that says which judge wrote ``out_path``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + META_SUFFIX)


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Every file one ``judge`` run writes, derived from ``--out``."""

    out: Path

    @property
    def is_csv(self) -> bool:
        """Verdicts as CSV (by the extension), kept in a JSON Lines store beside it."""
        return self.out.suffix.lower() == ".csv"

    @property
    def store(self) -> Path:
        """The resumable JSON Lines store of the verdicts."""
        return self.out.with_name(self.out.name + ".verdicts.jsonl") if self.is_csv else self.out

    @property
    def meta(self) -> Path:
        """The sidecar naming the judge that writes here."""
        return meta_path(self.out)

    @property
    def metrics(self) -> Path:
        """The metrics against the labels, as JSON."""
        return self.out.with_name(self.out.name + ".metrics.json")

    @property
    def report(self) -> Path:
        """The same metrics, for people."""
        return self.out.with_name(self.out.name + ".report.md")

    def written(self) -> list[Path]:
        """The files whose existence means a judge wrote here before (the sidecar aside)."""
        return list(dict.fromkeys([self.out, self.store, self.metrics, self.report]))


def _identity(spec: JudgeSpec, category: str, columns: Columns) -> dict[str, Any]:
    identity: dict[str, Any] = {"format": _FORMAT, "judge": spec.model, "backend": spec.backend,
                                "prompt": spec.prompt, "category": category}  # fmt: skip
    if columns.context:
        identity["context_column"] = columns.context
    if columns.keep:
        identity["keep_columns"] = list(columns.keep)
    return identity


def _claim_output(outputs: Outputs, input_path: Path, identity: dict[str, Any]) -> None:
    """Refuse an ``--out`` that this judge may not write (see the module docstring); changes nothing."""
    out = outputs.out
    for path in outputs.written():
        if path.exists() and input_path.exists() and os.path.samefile(path, input_path):
            raise DataError(str(out), None, "--out", "a file other than --input (verdicts go beside the input)",
                            str(path))  # fmt: skip
        if path.exists() and not path.is_file():
            raise DataError(str(path), None, "--out", "a file path", "a folder")
    ours = [p for p in outputs.written() if p.is_file() and p.stat().st_size > 0]
    if not outputs.meta.is_file():
        if ours:
            expected = f"a new path, or a verdict file of `judgeforge judge` ({outputs.meta.name} beside it)"
            raise DataError(str(ours[0]), None, "--out", expected, "an existing file of other origin: not overwritten")
        return
    try:
        recorded = json.loads(outputs.meta.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            str(outputs.meta), None, "<file>", "the JSON written by `judgeforge judge`", str(error)
        ) from error
    if not isinstance(recorded, dict) or recorded.get("format") != _FORMAT:
        raise DataError(str(outputs.meta), None, "format", _FORMAT, recorded.get("format")
                        if isinstance(recorded, dict) else type(recorded).__name__)  # fmt: skip
    changed = [k for k in _IDENTITY if recorded.get(k) != identity.get(k)]
    if changed and ours:
        was = ", ".join(f"{k} {recorded.get(k)!r}" for k in _IDENTITY if recorded.get(k) is not None)
        raise DataError(str(out), None, changed[0], f"the judge that wrote this file ({was}); use another --out",
                        identity.get(changed[0]))  # fmt: skip


def _open_output(outputs: Outputs, identity: dict[str, Any]) -> ResultStore:
    """The verdict store keyed by id (locked), its sidecar written before any verdict."""
    path = outputs.store
    try:
        store = ResultStore.open_file(path, key=lambda r: str(r["id"]), key_fields=("id",), sort_keys=False)
    except StoreLockedError as error:
        raise DataError(
            str(outputs.out), None, "--out", "a file no other run is writing", "locked by another run"
        ) from error
    except DataError as error:
        raise DataError(str(path), error.row, error.field, "a whole verdict line; a corrupt line inside the file is "
                        "not a torn write, so it is not resumed past (repair it or use another --out)",
                        error.got) from error  # fmt: skip
    write_atomically(outputs.meta, json.dumps(identity, indent=2) + "\n")
    return store


def _kept_name(name: str) -> str:
    return f"input_{name}" if name in _VERDICT_FIELDS else name


def _record(result: JudgeResult, kept: dict[str, Any]) -> dict[str, Any]:
    record = {
        "id": result.example_id,
        "label": result.label,
        "status": result.status,
        "p_positive": result.p_positive,
        "explanation": result.explanation,
    }
    if result.error:
        record["error"] = result.error
    return record | {_kept_name(name): value for name, value in kept.items()}


def _csv_text(records: list[dict[str, Any]], keep: tuple[str, ...]) -> str:
    handle = io.StringIO()
    fields = list(_VERDICT_FIELDS) + [_kept_name(name) for name in keep]
    writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v if isinstance(v, str | int | float) else json.dumps(v)
                         for k, v in record.items()})  # fmt: skip
    return handle.getvalue()


def label_metrics(transcripts: Transcripts, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evaluation module's metrics of the stored verdicts against the file's human labels."""
    ids = [i for i in transcripts.labels if i in records]
    return compute_binary_metrics(
        [transcripts.labels[i] for i in ids],
        [records[i].get("label") for i in ids],
        [records[i].get("status", "error") for i in ids],
        [records[i].get("p_positive") for i in ids],
        n_boot=1000,
        seed=0,
    )


def _number(value: float) -> str:
    return "n/a" if is_missing(value) else f"{value:.3f}"


def metrics_lines(metrics: dict[str, Any], unlabelled: int) -> list[str]:
    """What ``judge`` prints about its verdicts against the labels (and writes to ``<out>.report.md``)."""
    auroc = _number(metrics["auroc"]) if metrics["n_prob"] else f"n/a ({metrics['reasons'].get('auroc', 'no P')})"
    return [
        f"against {metrics['n']} labelled rows ({unlabelled} without a label, left out): "
        f"precision {_number(metrics['precision'])}, recall {_number(metrics['recall'])}, "
        f"F1 {_number(metrics['f1'])} [95% CI {_number(metrics['f1_ci_low'])}, {_number(metrics['f1_ci_high'])}], "
        f"AUROC {auroc}",
        f"coverage {_number(metrics['coverage'])}: invalid {metrics['n_invalid']}, refusal {metrics['n_refusal']}, "
        f"error {metrics['n_error']} (counted as wrong answers in the figures above)",
    ]


def _json_safe(value: Any) -> Any:
    if is_missing(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _write_metrics(outputs: Outputs, identity: dict[str, Any], metrics: dict[str, Any], lines: list[str],
                   unlabelled: int) -> None:  # fmt: skip
    payload = {"judge": identity, "n_unlabelled": unlabelled, "metrics": _json_safe(metrics)}
    write_atomically(outputs.metrics, json.dumps(payload, indent=2) + "\n")
    title = f"# {identity['judge']} ({identity['backend']}, {identity['prompt']}) on {identity['category']}"
    write_atomically(outputs.report, "\n\n".join([title, *lines, f"verdicts: {outputs.out.name}"]) + "\n")


def judge_file(
    *,
    judge: str | JudgeSpec,
    prompt: str = "basic",
    category: str,
    input_path: str | Path,
    out_path: str | Path,
    columns: Columns | None = None,
    categories_dirs: list[str] | None = None,
    batch_size: int = 8,
) -> str:
    """Judge every row of ``input_path`` and write one verdict per row to ``out_path`` (see the module docstring).

    Everything that can be refused (category, prompt, backend options, columns, labels, the output)
    is checked before the model loads.

    Returns:
        The summary: judged, invalid, refusal, error, skipped, resumed, and the metrics with labels.
    """
    from tqdm.auto import tqdm

    cat = load_category(category, categories_dirs)
    spec = spec_for(judge, prompt, batch_size)
    registry.parse_options(spec.backend, spec.options, "<judge spec>")
    if registry.backend(spec.backend).uses_prompt:
        load_template(spec.prompt)
    columns = columns or Columns()
    transcripts = read_transcripts(input_path, cat, columns)
    outputs = Outputs(Path(out_path))
    identity = _identity(spec, cat.name, columns)
    _claim_output(outputs, Path(input_path), identity)
    statuses: Counter = Counter()
    step = max(1, batch_size)
    with _open_output(outputs, identity) as store:
        torn = store.stats.torn
        todo = [e for e in transcripts.examples if e["id"] not in store]
        resumed = len(transcripts.examples) - len(todo)
        if todo:
            judge_obj = build_judge(spec)
            # One judge call and one fsynced write per batch: a killed run loses at most one batch.
            with tqdm(total=len(transcripts.examples), initial=resumed, unit="judgment", desc=judge_obj.name) as bar:
                for start in range(0, len(todo), step):
                    batch = todo[start : start + step]
                    results = judge_obj.judge(batch, cat)
                    store.append([_record(r, transcripts.kept[r.example_id]) for r in results])
                    statuses.update(result.status for result in results)
                    bar.update(len(batch))
        records = {str(r["id"]): r for r in store.records()}
    if outputs.is_csv:
        ordered = [records[e["id"]] for e in transcripts.examples if e["id"] in records]
        write_atomically(outputs.out, _csv_text(ordered, columns.keep))
    skipped = transcripts.skipped
    detail = f" ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
    torn_note = f"; {torn} torn line(s) dropped" if torn else ""
    summary = (
        f"judged {sum(statuses.values())}: ok {statuses['ok']}, invalid {statuses['invalid']}, "
        f"refusal {statuses['refusal']}, error {statuses['error']}; skipped {sum(skipped.values())}{detail}; "
        f"resumed {resumed}{torn_note} -> {outputs.out}"
    )
    if not columns.label:
        return summary
    if not transcripts.labels:
        return summary + f"\nno metrics: the column '{columns.label}' is empty in every row"
    metrics = label_metrics(transcripts, records)
    lines = metrics_lines(metrics, transcripts.unlabelled)
    _write_metrics(outputs, identity, metrics, lines, transcripts.unlabelled)
    return "\n".join([summary, *lines, f"metrics -> {outputs.metrics}, {outputs.report}"])
