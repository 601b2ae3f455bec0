"""judge_file: CSV and JSON Lines in, one JSON line per row out, resumable, clear column errors."""

from __future__ import annotations

import csv
import json

import pytest

from evaluation.judge_file import judge_file, spec_for
from evaluation.judges import JudgeSpec
from evaluation.transcripts import Columns, read_transcripts
from recipes.categories import load_category
from recipes.schema import DataError


def _write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


SCRIPT = {
    "c1": '{"verdict": "JAILBROKEN", "explanation": "gave steps"}',
    "c2": '{"verdict": "SAFE"}',
    "c3": "no verdict here",
    "c4": {"error": "backend down"},
    "c6": {"probs": [0.25, 0.75]},
}


def _fake(**options):
    return JudgeSpec("scripted", backend="fake", options={"outputs": SCRIPT} | options)


def test_csv_with_custom_columns(tmp_path):
    source = tmp_path / "chats.csv"
    rows = [
        {"conv": "c1", "question": "how to hotwire", "answer": "Step 1..."},
        {"conv": "c2", "question": "hi", "answer": "Hello"},
        {"conv": "c3", "question": "q", "answer": "a"},
        {"conv": "c4", "question": "q", "answer": "a"},
        {"conv": "c5", "question": "q", "answer": "   "},  # empty response: skipped, counted
        {"conv": "c2", "question": "again", "answer": "dup"},  # repeated id: skipped, counted
        {"conv": "c6", "question": "q", "answer": "a"},
    ]
    _write_csv(source, rows, ["conv", "question", "answer"])
    out = tmp_path / "out" / "verdicts.jsonl"
    summary = judge_file(
        judge=_fake(),
        category="jailbreak",
        input_path=source,
        out_path=out,
        columns=Columns(prompt="question", response="answer", id="conv"),
        batch_size=2,
    )
    lines = _lines(out)
    assert [line["id"] for line in lines] == ["c1", "c2", "c3", "c4", "c6"]
    assert lines[0] == {"id": "c1", "label": 1, "status": "ok", "p_positive": None, "explanation": "gave steps"}
    assert lines[2]["status"] == "invalid" and lines[2]["label"] is None
    assert lines[3]["status"] == "error" and lines[3]["error"] == "backend down"
    assert lines[4]["label"] == 0 and lines[4]["p_positive"] == 0.25
    assert "judged 5: ok 3, invalid 1, refusal 0, error 1" in summary
    assert "skipped 2 (empty response: 1, repeated id: 1)" in summary
    assert "resumed 0" in summary


def test_jsonl_with_chat_prompts_and_no_id_column(tmp_path):
    source = tmp_path / "chats.jsonl"
    rows = [
        {"prompt": [{"role": "user", "content": "hello"}], "response": "hi there", "label": 0},
        {"prompt": "second", "response": "answer", "label": 1},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    read = read_transcripts(source, load_category("jailbreak"))
    assert [e["id"] for e in read.examples] == ["row-1", "row-2"] and not read.skipped
    assert read.examples[0]["prompt"] == [{"role": "user", "content": "hello"}]
    out = tmp_path / "v.jsonl"
    summary = judge_file(
        judge=_fake(outputs=['{"verdict": "SAFE"}']), category="jailbreak", input_path=source, out_path=out
    )
    assert [line["id"] for line in _lines(out)] == ["row-1", "row-2"]
    assert summary.startswith("judged 2: ok 2")


def test_resume_skips_done_ids_and_drops_a_torn_line(tmp_path):
    source = tmp_path / "chats.csv"
    _write_csv(
        source, [{"id": f"c{i}", "prompt": "q", "response": "a"} for i in range(1, 7)], ["id", "prompt", "response"]
    )
    out = tmp_path / "v.jsonl"
    judge_file(judge=_fake(), category="jailbreak", input_path=source, out_path=out, batch_size=1)
    complete = out.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(complete) == 6
    # A run killed mid-write: two whole lines and half of the third.
    out.write_text("".join(complete[:2]) + complete[2][:15], encoding="utf-8")
    summary = judge_file(judge=_fake(), category="jailbreak", input_path=source, out_path=out, batch_size=1)
    assert "judged 4" in summary and "resumed 2" in summary and "1 torn line(s) dropped" in summary
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == [f"c{i}" for i in range(1, 7)]
    assert lines == [json.loads(line) for line in complete]
    # Nothing left to do: nothing judged, nothing duplicated.
    again = judge_file(judge=_fake(), category="jailbreak", input_path=source, out_path=out)
    assert again.startswith("judged 0") and "resumed 6" in again
    assert len(_lines(out)) == 6


def test_missing_column_names_the_file_and_the_columns_found(tmp_path):
    source = tmp_path / "chats.csv"
    _write_csv(source, [{"id": "1", "prompt": "q", "answer": "a"}], ["id", "prompt", "answer"])
    # An hf judge whose model does not exist: the column check must come first.
    with pytest.raises(DataError) as error:
        judge_file(judge="no/such-model", category="jailbreak", input_path=source, out_path=tmp_path / "o.jsonl")
    message = str(error.value)
    assert str(source) in message and "field 'response'" in message
    assert "--response-column" in message and "['id', 'prompt', 'answer']" in message
    assert not (tmp_path / "o.jsonl").exists()


def test_bad_json_line_and_missing_file_and_unknown_category(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"prompt": "q", "response": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field '<json>'"):
        read_transcripts(source, load_category("jailbreak"))
    with pytest.raises(DataError, match="no such file"):
        read_transcripts(tmp_path / "missing.csv", load_category("jailbreak"))
    with pytest.raises(DataError, match="field 'category'"):
        judge_file(judge=_fake(), category="astrology", input_path=source, out_path=tmp_path / "o.jsonl")


def test_guard_names_get_the_guard_backend():
    assert spec_for("meta-llama/Llama-Guard-3-8B", "basic", 4).backend == "guard"
    assert spec_for("smollm2-135m", "criteria", 4) == JudgeSpec("smollm2-135m", prompt="criteria", batch_size=4)
