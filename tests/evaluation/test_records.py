"""Typed records between run and report: names, round trips of the on-disk JSON, the one JSON Lines reader."""

from __future__ import annotations

import json
import math

import pytest

from evaluation.judges import JudgeResult
from evaluation.metrics import bootstrap_f1_ci, compute_second_level, count_flips
from evaluation.records import JudgeName, JudgmentRecord, MetricRow, RunInfo
from evaluation.store import ResultStore, read_records
from recipes.readers import read_jsonl, read_jsonl_rows, scan_jsonl
from recipes.schema import DataError


def test_judge_name_builds_and_parses_second_level_names():
    name = JudgeName.review("m/basic", "rev")
    assert str(name) == "m/basic+review:rev" and name.is_review
    assert JudgeName.parse("m/basic+review:rev") == name
    assert JudgeName.parse("a+review:b+review:c") == JudgeName("a+review:b", "c")  # a review of a review
    plain = JudgeName.parse("reference/tfidf")
    assert not plain.is_review and str(plain) == "reference/tfidf"
    assert str(JudgeName.parse("best+review:rev").reviewing("m/score")) == "m/score+review:rev"


def test_judgment_record_round_trips_the_stored_line(tmp_path):
    result = JudgeResult("e1", 1, "ok", p_positive=float("nan"), raw="{}", explanation="why", tokens=3)
    example = {"id": "e1", "label": 1, "group": "q7"}
    record = JudgmentRecord.from_result(result, judge="m/basic", kind="prompted", model="m", prompt="basic",
                                        backend="fake", category="jailbreak", example=example, repeat=0)  # fmt: skip
    assert record.p_positive is None and record.cluster == "jailbreak:q7" and record.key[2] == "e1"
    stored = record.to_dict()
    assert "reviews" not in stored and stored["group"] == "q7" and stored["human_label"] == 1
    with ResultStore.open(tmp_path) as store:
        store.append([record])
    line = json.loads((tmp_path / "results.jsonl").read_text())
    assert line == stored and read_records(tmp_path) == [record]
    # An old line with fewer keys and an unknown one still reads, and writes back unchanged.
    old = {"judge": "j", "category": "c", "example_id": 5, "repeat": "0", "human_label": 0, "label": 0,
           "status": "ok", "future": [1]}  # fmt: skip
    typed = JudgmentRecord.from_dict(old)
    assert typed.example_id == "5" and typed.repeat == 0 and typed.cluster == "c:5" and typed.extra == {"future": [1]}
    assert typed.to_dict()["future"] == [1]


def test_run_info_keeps_run_json_and_resolves_best():
    data = {"name": "r", "recipe": {}, "data": {"split": "test"}, "categories": ["c"], "repeats": 2, "seed": 3,
            "n_boot": 50, "judges": [{"name": "best+review:rev", "kind": "second_level"}],
            "second_level_choice": {"best+review:rev": "m/score"}, "finished": {"judged": 4}}  # fmt: skip
    info = RunInfo.from_dict(data)
    assert info.to_dict() == data and list(info.to_dict()) == list(data)
    assert info.resolved_name("best+review:rev") == "m/score+review:rev" and info.boot == 50
    bare = RunInfo(name="folder")
    assert bare.boot == 1000 and bare.report_seed == 0 and "finished" not in bare.to_dict()


def test_metric_row_reads_like_its_flat_dict():
    flat = {"judge": "j", "category": "all", "kind": "tuned", "f1": math.nan, "reasons": {"f1": "none"}}
    row = MetricRow.from_dict(flat)
    assert row.kind == "tuned" and row["f1"] is flat["f1"] and row.reason("f1", "?") == "none"
    assert dict(row) == flat and row.to_dict() == flat and list(row) == list(flat)
    assert json.loads(json.dumps(MetricRow.of("j", "all", {"f1": 0.5}, {}))) == {"judge": "j", "category": "all",
                                                                                 "f1": 0.5, "reasons": {}}  # fmt: skip
    with pytest.raises(KeyError):
        row["missing"]


def test_one_jsonl_reader_policy_corrupt_lines_are_errors_only_the_tail_is_torn(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\nnot json\n\xff\xfe\n{"a": 2}\n{"a": 3, "cut')
    scan = scan_jsonl(path)
    assert [line.number for line in scan.lines] == [1, 3, 4, 5]
    assert "x.jsonl:3: field '<line>'" in str(scan.lines[1].error) and "not UTF-8" in str(scan.lines[2].error)
    assert scan.torn is not None and scan.torn.number == 6 and scan.good_end == path.read_bytes().rindex(b"\n") + 1
    with pytest.raises(DataError, match=r"x\.jsonl:3: field '<line>'"):
        read_jsonl_rows(path)
    with pytest.raises(DataError, match=r"x\.jsonl:4: .*not UTF-8 at byte offset 19"):
        read_jsonl(path)  # a file in another encoding: none of its rows can be trusted
    path.write_bytes(b'{"a": 1}\n\nnot json\n{"a": 2}\n{"a": 3, "cut')
    rows, numbers = read_jsonl(path)  # source rows: every bad line is a row holding its error
    assert numbers == [1, 3, 4, 5] and rows[0] == {"a": 1} and "__error__" in rows[1] and "__error__" in rows[3]
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: field '<line>': expected a JSON object, got 'list'"):
        read_jsonl_rows(path)
    path.write_text('{"a": 1}\n{"a": 2}')  # a whole last value without its newline is a row, not torn
    assert scan_jsonl(path).torn is None and [n for n, _ in read_jsonl_rows(path)] == [1, 2]


def test_one_bootstrap_gives_the_f1_interval_and_the_paired_change():
    true = [1, 0, 1, 1, 0, 0, 1, 0]
    before = [1, 1, 0, 1, 0, 0, 1, 1]
    after = [1, 0, 1, 1, 0, 0, 1, 1]
    ok = ["ok"] * len(true)
    change = compute_second_level(true, before, ok, after, ok, n_boot=300, seed=4)
    same = compute_second_level(true, before, ok, before, ok, n_boot=300, seed=4)
    assert (same["f1_change_ci_low"], same["f1_change_ci_high"]) == (0.0, 0.0)
    assert change["f1_change_ci_low"] <= change["f1_change"] <= change["f1_change_ci_high"]
    low, high, _ = bootstrap_f1_ci(true, after, n_boot=300, seed=4)
    assert low <= change["f1_after"] <= high


def test_one_flip_counter():
    counts = count_flips([1, 0, 1, 0], [0, 0, None, 1], ["ok", "ok", "invalid", "ok"], [1, 1, 1, 1], ["ok"] * 4)
    assert counts["flips"] == 2 and counts["fixed"] == 1 and counts["broken"] == 1
    assert counts["rescued"] == 1 and counts["rescued_right"] == 1
