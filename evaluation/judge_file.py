"""Judge a CSV or JSON Lines file of victim transcripts: the everyday use of a judge.

``judgeforge judge --judge MODEL_OR_DIR --prompt basic --category jailbreak --input chats.csv
--out verdicts.jsonl`` writes one JSON line per input row: ``id``, ``label``, ``status``,
``p_positive`` (when the backend reads probabilities) and ``explanation`` (plus ``error`` when the
backend failed on that row). Lines are flushed and fsynced per batch, so a killed run loses at most
the batch in flight; running the same command again skips the ids already in the output (a torn
last line is dropped and counted) and finishes the rest.

Rows without an id column get ``row-<n>`` (their 1-based row number), stable as long as the file
is. Rows with an empty response or a repeated id are skipped and counted, never dropped silently.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.judges import JudgeResult, JudgeSpec, build_judge
from recipes.categories import load_category
from recipes.prompts import load_template
from recipes.readers import ERROR_KEY, csv_rows, read_text
from recipes.schema import DataError, check_prompt


__all__ = ["judge_file", "read_transcripts", "spec_for"]

logger = logging.getLogger(__name__)


def spec_for(judge: str | JudgeSpec, prompt: str, batch_size: int) -> JudgeSpec:
    """A spec for ``judge``: guard model names get the guard backend, anything else ``hf``."""
    if isinstance(judge, JudgeSpec):
        return judge
    from evaluation.guards.judge import guess_kind

    try:
        kind = guess_kind(judge)
    except ValueError:
        return JudgeSpec(model=judge, prompt=prompt, backend="hf", batch_size=batch_size)
    return JudgeSpec(model=judge, prompt=prompt, backend="guard", batch_size=batch_size, options={"kind": kind})


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """Yield (1-based row number, row, column names) from a CSV or JSON Lines file."""
    if path.suffix.lower() == ".csv":
        for number, row in csv_rows(path):  # BOM, encoding, unterminated quotes, long fields: DataError
            if ERROR_KEY in row:
                raise row[ERROR_KEY]
            yield number, row, list(row)
        return
    with io.StringIO(read_text(path), newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(str(path), number, "<json>", "one JSON object per line", error.msg) from error
            if not isinstance(row, dict):
                raise DataError(str(path), number, "<json>", "a JSON object", type(row).__name__)
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


def _done_ids(out_path: Path) -> tuple[set[str], int]:
    """Ids already judged in ``out_path``; a torn last line is cut off (returned as a count)."""
    if not out_path.is_file():
        return set(), 0
    data = out_path.read_bytes()
    done: set[str] = set()
    good_end, torn = 0, 0
    position = 0
    for line in data.splitlines(keepends=True):
        position += len(line)
        try:
            record = json.loads(line)
            done.add(str(record["id"]))
            good_end = position
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            if line.strip():
                torn += 1
    if good_end < len(data):
        with open(out_path, "r+b") as handle:
            handle.truncate(good_end)
        logger.warning("%s: dropped %d torn line(s) at the end (a run was interrupted mid-write)", out_path, torn)
    return done, torn


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
    if spec.backend not in ("guard", "reference"):
        load_template(spec.prompt)
    examples, skipped = read_transcripts(
        input_path,
        category=cat.name,
        prompt_column=prompt_column,
        response_column=response_column,
        id_column=id_column,
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done, torn = _done_ids(out)
    todo = [e for e in examples if e["id"] not in done]
    resumed = len(examples) - len(todo)
    statuses: Counter = Counter()
    if todo:
        judge_obj = build_judge(spec)
        # Larger than a batch so the backend can sort by length and share prefixes across rows; a
        # killed run loses at most this many rows.
        chunk = max(64, batch_size * 8)
        with (
            open(out, "a", encoding="utf-8") as handle,
            tqdm(total=len(examples), initial=resumed, unit="judgment", desc=judge_obj.name) as bar,
        ):
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                results = judge_obj.judge(batch, cat)
                for result in results:
                    handle.write(json.dumps(_record(result), ensure_ascii=False) + "\n")
                    statuses[result.status] += 1
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(batch))
    skipped_total = sum(skipped.values())
    detail = f" ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
    torn_note = f"; {torn} torn line(s) dropped" if torn else ""
    return (
        f"judged {sum(statuses.values())}: ok {statuses['ok']}, invalid {statuses['invalid']}, "
        f"refusal {statuses['refusal']}, error {statuses['error']}; skipped {skipped_total}{detail}; "
        f"resumed {resumed}{torn_note} -> {out}"
    )
