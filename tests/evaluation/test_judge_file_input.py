"""read_transcripts on hostile input: nothing is lost or mangled without a clear error."""

from __future__ import annotations

import json
import logging

import pytest

from evaluation.transcripts import read_transcripts
from recipes.categories import load_category
from recipes.schema import DataError, validate_example


def _read(path):
    read = read_transcripts(path, load_category("jailbreak"))
    return read.examples, read.skipped


def test_an_unterminated_quote_does_not_swallow_rows(tmp_path):
    path = tmp_path / "chats.csv"
    path.write_text('id,prompt,response\n1,a,"ok"\n2,b,"never closed\n3,c,d\n4,e,f\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"chats\.csv:2: .*closing quote"):
        _read(path)


def test_a_bom_keeps_the_id_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,prompt,response\nabc,p,r\n".encode())
    examples, _ = _read(path)
    assert examples[0]["id"] == "abc"
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes("\ufeff".encode() + json.dumps({"id": "x1", "prompt": "p", "response": "r"}).encode() + b"\n")
    assert _read(jsonl)[0][0]["id"] == "x1"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.csv", ""),
        ("header.csv", "id,prompt,response\n"),
        ("wrong_header_only.csv", "conv,question,answer\n"),
        ("empty.jsonl", "\n"),
    ],
)
def test_no_rows_is_an_error(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        _read(path)


def test_a_wrong_header_names_the_columns(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("conv,question,answer\n1,a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong\.csv:1: field 'prompt'.*conv"):
        _read(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_input_names_file_and_offset(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    line = (
        b'{"id": "1", "prompt": "caf\xe9", "response": "r"}\n'
        if suffix == ".jsonl"
        else b"id,prompt,response\n1,caf\xe9,r\n"
    )
    path.write_bytes(line)
    with pytest.raises(DataError, match=rf"latin1\{suffix}:\d+: .*UTF-8.*offset \d+"):
        _read(path)


def test_a_field_over_128kb_is_read(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,prompt,response\n1,p," + "y" * 200_000 + "\n", encoding="utf-8")
    assert len(_read(path)[0][0]["response"]) == 200_000


def test_a_row_with_extra_fields_is_an_error(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,prompt,response\n1,p,r\n2,p,r,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ragged\.csv:2: .*3 fields"):
        _read(path)


def test_an_empty_chat_prompt_is_rejected_with_the_build_message(tmp_path, caplog):
    path = tmp_path / "chats.jsonl"
    rows = [{"id": "a", "prompt": [], "response": "r"}, {"id": "b", "prompt": "p", "response": "r"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    caplog.set_level(logging.WARNING)
    examples, skipped = _read(path)
    assert [e["id"] for e in examples] == ["b"]
    assert skipped["empty prompt"] == 1
    with pytest.raises(DataError) as build_error:
        validate_example({"category": "jailbreak", "prompt": [], "response": "r", "label": 0}, str(path), 1)
    assert str(build_error.value) in caplog.text
