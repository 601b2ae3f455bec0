"""judge_file never destroys a user's file: --out is only this judge's own resumable output (issue 15, 3 and 10)."""

from __future__ import annotations

import json
import threading

import pytest

import evaluation.judge_file as judge_file_module
from evaluation.judge_file import judge_file
from evaluation.judges import JudgeSpec
from recipes.schema import DataError


def _source(tmp_path, n=6):
    path = tmp_path / "chats.jsonl"
    rows = [{"id": f"c{i}", "prompt": "q", "response": f"answer {i}"} for i in range(1, n + 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def meta_path(out):
    return out.with_name(out.name + ".meta.json")


def _fake(model="scripted", prompt="basic"):
    return JudgeSpec(model, prompt=prompt, backend="fake", options={"outputs": ['{"verdict": "SAFE"}']})


def _run(source, out, **kwargs):
    kwargs = {"judge": _fake(), "category": "jailbreak", "batch_size": 2} | kwargs
    return judge_file(input_path=source, out_path=out, **kwargs)


class _Watched:
    """The real judge, with each call's batch size recorded (and a hook that runs before the call)."""

    def __init__(self, judge, calls, before):
        self.judge_obj, self.calls, self.before, self.name = judge, calls, before, judge.name

    def judge(self, examples, category, **kwargs):
        self.calls.append(len(examples))
        self.before(len(self.calls))
        return self.judge_obj.judge(examples, category, **kwargs)


def _watch(monkeypatch, before=lambda n: None):
    calls: list[int] = []
    real = judge_file_module.build_judge
    monkeypatch.setattr(judge_file_module, "build_judge", lambda spec: _Watched(real(spec), calls, before))
    return calls


def test_an_existing_file_that_is_not_a_verdict_file_is_refused_untouched(tmp_path):
    source = _source(tmp_path)
    out = tmp_path / "notes.csv"
    out.write_text("name,score\nann,3\nbob,4\ncid,5\ndee,6\neve,7\n", encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(DataError, match=r"notes\.csv: field '--out': .*not overwritten"):
        _run(source, out)
    assert out.read_bytes() == before and not meta_path(out).exists()


def test_input_as_out_is_refused(tmp_path):
    source = _source(tmp_path)
    before = source.read_bytes()
    with pytest.raises(DataError, match="a file other than --input"):
        _run(source, tmp_path / "." / "chats.jsonl")
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"judge": _fake(model="other")}, "judge"),
        ({"judge": _fake(prompt="criteria")}, "prompt"),
        ({"category": "over_refusal"}, "category"),
    ],  # fmt: skip
)
def test_another_judge_prompt_or_category_is_refused(tmp_path, change, field):
    source, out = _source(tmp_path), tmp_path / "v.jsonl"
    _run(source, out)
    before = out.read_bytes()
    with pytest.raises(DataError, match=rf"v\.jsonl: field '{field}': expected the judge that wrote this file"):
        _run(source, out, **change)
    assert out.read_bytes() == before
    assert "resumed 6" in _run(source, out)  # the same judge still resumes


def test_sidecar_records_the_judge_and_lines_keep_their_format(tmp_path):
    source, out = _source(tmp_path, 3), tmp_path / "v.jsonl"
    _run(source, out)
    expected = {"format": "judgeforge-verdicts/1", "judge": "scripted", "backend": "fake", "prompt": "basic"}
    assert json.loads(meta_path(out).read_text()) == expected | {"category": "jailbreak"}
    first = out.read_text(encoding="utf-8").splitlines()[0]
    assert list(json.loads(first)) == ["id", "label", "status", "p_positive", "explanation"]


def test_two_runs_on_one_out_cannot_both_write(tmp_path, monkeypatch):
    source, out = _source(tmp_path), tmp_path / "v.jsonl"
    inside, release = threading.Event(), threading.Event()

    def hold(n):
        if n == 1:
            inside.set()
            assert release.wait(30)

    calls = _watch(monkeypatch, hold)
    first = threading.Thread(target=_run, args=(source, out))
    first.start()
    try:
        assert inside.wait(30)
        with pytest.raises(DataError, match=r"v\.jsonl: field '--out': expected a file no other run is writing"):
            _run(source, out)
    finally:
        release.set()
        first.join(30)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [f"c{i}" for i in range(1, 7)]  # each id once
    assert calls == [2, 2, 2]


def test_a_corrupt_middle_line_is_refused_with_its_line_number(tmp_path):
    source, out = _source(tmp_path), tmp_path / "v.jsonl"
    _run(source, out)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = "{not json\n"
    out.write_text("".join(lines), encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(DataError, match=r"v\.jsonl:2: field '<line>': expected a whole verdict line"):
        _run(source, out)
    assert out.read_bytes() == before


def test_a_killed_judge_loses_at_most_one_batch(tmp_path, monkeypatch):
    source, out = _source(tmp_path, 10), tmp_path / "v.jsonl"

    def kill(n):
        if n == 3:
            raise KeyboardInterrupt

    calls = _watch(monkeypatch, kill)
    with pytest.raises(KeyboardInterrupt):
        _run(source, out, batch_size=2)
    assert calls == [2, 2, 2]  # one judge call per --batch-size rows
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["c1", "c2", "c3", "c4"]
    monkeypatch.undo()
    summary = _run(source, out, batch_size=2)
    assert summary.startswith("judged 6") and "resumed 4" in summary
    assert len(out.read_text().splitlines()) == 10
