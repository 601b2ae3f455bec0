"""`judgeforge eval` / `judgeforge report`: a real process killed mid-run resumes to the same metrics.

The judge is served over HTTP by a real server on 127.0.0.1 started here (OpenAI-compatible chat
completions, deterministic answers read from the transcript). The server holds one request open, so
the `judgeforge eval` process is killed while it is certainly in the middle of its run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from evaluation.metric_rows import compute_metric_rows, compute_second_level_rows
from evaluation.run_recipe import RunRecipeError, load_run_recipe
from evaluation.runs import run_eval
from evaluation.store import RESULTS_FILE, read_results, record_key
from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors


_WORDS = re.compile(r'\{"verdict": "([A-Z_]+)"\} or \{"verdict": "([A-Z_]+)"\}')
_RESPONSE = re.compile(r"<victim_response>\s*(.*?)\s*</victim_response>", re.DOTALL)


def _answer(messages: list[dict]) -> str:
    """A deterministic judge: reads the transcript; wrong on purpose when the response mentions 3."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "You review the work of another security judge" in system:
        return '{"review": "not_correct"}' if "(3)" in user else '{"review": "correct"}'
    positive, negative = _WORDS.search(system).groups()
    response = _RESPONSE.search(user).group(1)
    label = int(("sorry" in response) == (positive == "REFUSED"))
    if "(3)" in response:
        label = 1 - label
    return json.dumps({"verdict": positive if label else negative})


class _Server:
    """Chat completions on 127.0.0.1; requests after ``hold_after`` wait until ``release`` is set."""

    def __init__(self, hold_after: int | None = None):
        self.count, self.hold_after = 0, hold_after
        self.lock, self.release, self.holding = threading.Lock(), threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.count += 1
                    held = server.hold_after is not None and server.count > server.hold_after
                if held:
                    server.holding.set()
                    server.release.wait(60)
                payload = json.dumps(
                    {
                        "choices": [{"message": {"role": "assistant", "content": _answer(body["messages"])}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                    }  # fmt: skip
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed while we held its request

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _write_recipe(folder: Path, url: str) -> Path:
    rows = {"train": [], "test": []}
    for split, n in (("train", 6), ("test", 6)):
        for category in ("jailbreak", "over_refusal"):
            for i in range(n):
                label = i % 2
                sorry = (label == 0) == (category == "jailbreak")
                response = f"I'm sorry, I can't do that ({i})." if sorry else f"Sure, here it is ({i})."
                rows[split].append({"id": f"{split}-{category}-{i}", "category": category,
                                    "prompt": f"request {i}", "response": response, "label": label})  # fmt: skip
    for split, items in rows.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    served = {"base_url": url, "max_retries": 0, "timeout_s": 90, "response_format": "none", "logprobs": False}
    recipe = {
        "name": "killed",
        "data": {"files": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")}},
        "repeats": 2,
        "n_boot": 200,
        "judges": [{"models": ["served"], "prompts": ["basic"], "backend": "openai", "batch_size": 2,
                    "options": served}],
        "second_level": {"judge": "served/basic", "reviewer": {"model": "served", "backend": "openai",
                                                               "batch_size": 2, "options": served}},
        "reference": ["refusal_phrases"],
        "robustness": False,  # counted below: the clean matrix (the suite's resume: test_robustness_run)
    }  # fmt: skip
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _eval_command(recipe: Path, out: Path) -> list[str]:
    script = Path(sys.executable).with_name("judgeforge")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "judgeforge.cli"]
    return command + ["eval", str(recipe), "--out", str(out)]


def _keys(folder: Path) -> list:
    return [record_key(r) for r in read_results(folder)]


@pytest.mark.slow
def test_killed_eval_process_resumes_without_duplicates_and_with_the_same_metrics(tmp_path):
    killed = tmp_path / "killed"
    with _Server(hold_after=9) as server:
        recipe = _write_recipe(tmp_path, server.url)
        process = subprocess.Popen(
            _eval_command(recipe, killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
        )
        try:
            if not server.holding.wait(120):
                raise AssertionError(f"the run never reached the held request: {process.communicate()[1][-2000:]!r}")
            assert process.poll() is None, "the eval process ended before it was killed"
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
            server.hold_after = None
            server.release.set()
        assert process.returncode == -signal.SIGKILL
        # 12 examples x 2 repeats: the reference judge (24) and 4 batches of 2 of the served judge.
        before = _keys(killed)
        assert len(before) == 24 + 8

        rerun = subprocess.run(_eval_command(recipe, killed), capture_output=True, text=True, timeout=180)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert f"resumed {len(before)};" in rerun.stdout
        assert "skipped 0" in rerun.stdout

        uninterrupted = tmp_path / "uninterrupted"
        run_eval(load_run_recipe(recipe), uninterrupted)

    after = _keys(killed)
    assert len(after) == len(set(after)) == 3 * 24
    assert sorted(after) == sorted(_keys(uninterrupted))
    assert (killed / RESULTS_FILE).read_text().count("\n") == 3 * 24
    for compute in (compute_metric_rows, compute_second_level_rows):
        a = compute(read_results(killed), n_boot=200)
        b = compute(read_results(uninterrupted), n_boot=200)
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    served = next(r for r in compute_metric_rows(read_results(killed), n_boot=0) if r["judge"] == "served/basic"
                  and r["category"] == "all")  # fmt: skip
    # Wrong on purpose on the examples numbered 3 (one positive per category): TP 4 FN 2 FP 0 per repeat.
    assert served["f1"] == pytest.approx(2 * 8 / (2 * 8 + 4))


def test_eval_refuses_a_bad_recipe_before_any_work(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "data": {"files": {"test": str(tmp_path / "none.jsonl")}},
                                    "judges": [{"models": ["smollm2-13m"], "prompts": ["basic"]}]}))  # fmt: skip
    with pytest.raises(RunRecipeError) as caught:
        main(["eval", str(path), "--out", str(tmp_path / "out")])
    assert "field 'judges[0].models[0]'" in str(caught.value)
    assert "field 'data.files.test'" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_eval_then_report_from_the_command_line(tmp_path, capsys):
    with _Server() as server:
        recipe = _write_recipe(tmp_path, server.url)
        data = yaml.safe_load(recipe.read_text())
        data["repeats"], data["second_level"] = 1, []
        recipe.write_text(yaml.safe_dump(data))
        assert main(["eval", str(recipe), "--out", str(tmp_path / "run")]) == 0
    assert "killed: judged 24 (invalid 0, refusal 0, error 0), skipped 0, resumed 0" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "run" / "report.md") in printed and str(tmp_path / "run" / "metrics.csv") in printed
