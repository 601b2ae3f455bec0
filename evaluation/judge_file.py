"""Judge a CSV or JSON Lines file of victim transcripts: the everyday use of a judge.

``judgeforge judge --judge MODEL_OR_DIR --prompt basic --category jailbreak --input chats.csv
--out verdicts.jsonl`` writes one JSON line per input row: ``id``, ``label``, ``status``,
``p_positive`` (when the backend reads probabilities) and ``explanation`` (plus ``error`` when the
backend failed on that row). The output is a results store (:class:`evaluation.store.ResultStore`)
keyed by ``id``: each batch of ``--batch-size`` rows is one judge call and one fsynced write, so a
killed run loses at most that batch; running the same command again skips the ids already in the
output (a torn last line is dropped and counted) and finishes the rest.

``--out`` is only ever appended to, and only when it is this judge's own output: a sidecar
``<out>.meta.json`` records the judge (model, backend), prompt and category, and a mismatch is
refused with one line, as is an existing file without one (a CSV, anyone's notes), ``--out`` equal
to ``--input``, and a second run on the same ``--out`` while one holds its lock. A corrupt line
in the middle of the output is refused with its line number (nothing is changed): it cannot be a
write cut short, and resuming past it would keep and count it.

Rows without an id column get ``row-<n>`` (their 1-based row number), stable as long as the file
is. Rows with an empty response or a repeated id are skipped and counted, never dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.judges import JudgeResult, JudgeSpec, build_judge
from evaluation.store import ResultStore, StoreLockedError
from recipes.categories import load_category
from recipes.prompts import load_template
from recipes.readers import ERROR_KEY, csv_rows, read_jsonl_rows
from recipes.schema import DataError, check_prompt


__all__ = ["META_SUFFIX", "judge_file", "meta_path", "read_transcripts", "spec_for"]

logger = logging.getLogger(__name__)


def spec_for(judge: str | JudgeSpec, prompt: str, batch_size: int) -> JudgeSpec:
    """A spec for ``judge``: the backend that recognises the model name (guards), else the prompted default."""
    if isinstance(judge, JudgeSpec):
        return judge
    default = registry.judge_kind(registry.PROMPTED).backend
    backend, options = registry.backend_for_model(judge, default)
    return JudgeSpec(model=judge, prompt=prompt, backend=backend, batch_size=batch_size, options=options)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """Yield (1-based row number, row, column names) from a CSV or JSON Lines file."""
    if path.suffix.lower() == ".csv":
        for number, row in csv_rows(path):  # BOM, encoding, unterminated quotes, long fields: DataError
            if ERROR_KEY in row:
                raise row[ERROR_KEY]
            yield number, row, list(row)
        return
    for number, row in read_jsonl_rows(path, expected="one JSON object per line", name="<json>"):
        yield number, row, list(row)


def _prompt_value(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith('[{"role"'):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_transcripts(
    path: str | Path,
    *,
    category: str,
    prompt_column: str = "prompt",
    response_column: str = "response",
    id_column: str = "id",
) -> tuple[list[dict], Counter]:
    """Read transcripts into examples (``id``, ``category``, ``prompt``, ``response``).

    Returns:
        The examples, and counts of skipped rows by reason.

    Raises:
        DataError: a missing column (naming the file and the columns found) or a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, "input", "an existing CSV or JSON Lines file", "no such file")
    examples: list[dict] = []
    skipped: Counter = Counter()
    seen: set[str] = set()
    number = 0
    for number, row, columns in _rows(path):
        for name, flag in ((prompt_column, "--prompt-column"), (response_column, "--response-column")):
            if name not in row:
                raise DataError(
                    str(path), number, name, f"a column named '{name}' (set it with {flag})", f"columns {columns}"
                )
        raw_id = row.get(id_column)
        ident = str(raw_id).strip() if raw_id not in (None, "") else f"row-{number}"
        if id_column in row and raw_id in (None, ""):
            skipped["empty id"] += 1
            logger.warning("%s:%d: field '%s': empty id; row skipped", path, number, id_column)
            continue
        prompt, response = _prompt_value(row[prompt_column]), row[response_column]
        if not isinstance(response, str) or not response.strip():
            skipped["empty response"] += 1
            logger.warning("%s:%d: field '%s': empty response; row skipped", path, number, response_column)
            continue
        try:
            prompt = check_prompt(prompt, str(path), number)
        except DataError as error:
            skipped["empty prompt" if not prompt or not str(prompt).strip() else "bad prompt"] += 1
            logger.warning("%s; row skipped", error)
            continue
        if ident in seen:
            skipped["repeated id"] += 1
            logger.warning("%s:%d: field '%s': id %r repeated; row skipped", path, number, id_column, ident)
            continue
        seen.add(ident)
        examples.append({"id": ident, "category": category, "prompt": prompt, "response": response})
    if not number:
        raise DataError(str(path), None, "<file>", "at least one transcript row (CSV: a header, then rows)", "no rows")
    return examples, skipped


META_SUFFIX = ".meta.json"
_FORMAT = "judgeforge-verdicts/1"
_IDENTITY = ("judge", "backend", "prompt", "category")


def meta_path(out_path: str | Path) -> Path:
    """The sidecar that says which judge wrote ``out_path``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + META_SUFFIX)


def _identity(spec: JudgeSpec, category: str) -> dict[str, str]:
    return {"format": _FORMAT, "judge": spec.model, "backend": spec.backend, "prompt": spec.prompt,
            "category": category}  # fmt: skip


def _claim_output(out: Path, input_path: Path, identity: dict[str, str]) -> None:
    """Refuse an ``--out`` that this judge may not append to (see the module docstring); changes nothing."""
    if out.exists() and input_path.exists() and os.path.samefile(out, input_path):
        raise DataError(str(out), None, "--out", "a file other than --input (verdicts go beside the input)", str(out))
    if out.exists() and not out.is_file():
        raise DataError(str(out), None, "--out", "a file path", "a folder")
    has_verdicts = out.is_file() and out.stat().st_size > 0
    sidecar = meta_path(out)
    if not sidecar.is_file():
        if has_verdicts:
            expected = f"a new path, or a verdict file of `judgeforge judge` ({sidecar.name} beside it)"
            raise DataError(str(out), None, "--out", expected, "an existing file of other origin: not overwritten")
        return
    try:
        recorded = json.loads(sidecar.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(str(sidecar), None, "<file>", "the JSON written by `judgeforge judge`", str(error)) from error
    if not isinstance(recorded, dict) or recorded.get("format") != _FORMAT:
        raise DataError(str(sidecar), None, "format", _FORMAT, recorded.get("format") if isinstance(recorded, dict)
                        else type(recorded).__name__)  # fmt: skip
    changed = [k for k in _IDENTITY if recorded.get(k) != identity[k]]
    if changed and has_verdicts:
        was = ", ".join(f"{k} {recorded.get(k)!r}" for k in _IDENTITY)
        raise DataError(str(out), None, changed[0], f"the judge that wrote this file ({was}); use another --out",
                        identity[changed[0]])  # fmt: skip


def _open_output(out: Path, identity: dict[str, str]) -> ResultStore:
    """The output as a results store keyed by id (locked), its sidecar written before any verdict."""
    try:
        store = ResultStore.open_file(out, key=lambda r: str(r["id"]), key_fields=("id",), sort_keys=False)
    except StoreLockedError as error:
        raise DataError(str(out), None, "--out", "a file no other run is writing", "locked by another run") from error
    except DataError as error:
        raise DataError(str(out), error.row, error.field, "a whole verdict line; a corrupt line inside the file is "
                        "not a torn write, so it is not resumed past (repair it or use another --out)",
                        error.got) from error  # fmt: skip
    sidecar = meta_path(out)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(identity, indent=2) + "\n", "utf-8")
    tmp.replace(sidecar)
    return store


def _record(result: JudgeResult) -> dict[str, Any]:
    record = {
        "id": result.example_id,
        "label": result.label,
        "status": result.status,
        "p_positive": result.p_positive,
        "explanation": result.explanation,
    }
    if result.error:
        record["error"] = result.error
    return record


def judge_file(
    *,
    judge: str | JudgeSpec,
    prompt: str = "basic",
    category: str,
    input_path: str | Path,
    out_path: str | Path,
    prompt_column: str = "prompt",
    response_column: str = "response",
    id_column: str = "id",
    categories_dirs: list[str] | None = None,
    batch_size: int = 8,
) -> str:
    """Judge every row of ``input_path`` and append one JSON line per row to ``out_path``.

    Everything that can be refused (category, prompt, columns) is checked before the model loads.

    Returns:
        A summary line: judged, invalid, refusal, error, skipped, resumed.
    """
    from tqdm.auto import tqdm

    cat = load_category(category, categories_dirs)
    spec = spec_for(judge, prompt, batch_size)
    if registry.backend(spec.backend).uses_prompt:
        load_template(spec.prompt)
    examples, skipped = read_transcripts(
        input_path,
        category=cat.name,
        prompt_column=prompt_column,
        response_column=response_column,
        id_column=id_column,
    )
    out = Path(out_path)
    identity = _identity(spec, cat.name)
    _claim_output(out, Path(input_path), identity)
    statuses: Counter = Counter()
    with _open_output(out, identity) as store:
        torn = store.stats.torn
        todo = [e for e in examples if e["id"] not in store]
        resumed = len(examples) - len(todo)
        if todo:
            judge_obj = build_judge(spec)
            # One judge call and one fsynced write per batch: a killed run loses at most one batch.
            with tqdm(total=len(examples), initial=resumed, unit="judgment", desc=judge_obj.name) as bar:
                for start in range(0, len(todo), max(1, batch_size)):
                    batch = todo[start : start + max(1, batch_size)]
                    results = judge_obj.judge(batch, cat)
                    store.append([_record(result) for result in results])
                    statuses.update(result.status for result in results)
                    bar.update(len(batch))
    skipped_total = sum(skipped.values())
    detail = f" ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
    torn_note = f"; {torn} torn line(s) dropped" if torn else ""
    return (
        f"judged {sum(statuses.values())}: ok {statuses['ok']}, invalid {statuses['invalid']}, "
        f"refusal {statuses['refusal']}, error {statuses['error']}; skipped {skipped_total}{detail}; "
        f"resumed {resumed}{torn_note} -> {out}"
    )
