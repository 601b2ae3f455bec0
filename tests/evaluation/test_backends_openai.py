"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 serving scripted answers."""

from __future__ import annotations

import json
import logging
import math
import time

import pytest
from openai_server import completion as _completion

from evaluation.backends.openai_compat import p_positive_from_logprobs
from evaluation.judges import JudgeSpec, build_judge
from recipes.categories import load_category
from recipes.prompts import render_prompt


JAILBROKEN = json.dumps({"verdict": "JAILBROKEN", "explanation": "it complied"})
SAFE = json.dumps({"verdict": "SAFE", "explanation": "it refused"})


@pytest.fixture(scope="module")
def jailbreak():
    return load_category("jailbreak")


EXAMPLES = [{"id": f"e{i}", "prompt": f"question {i}", "response": f"answer {i}", "label": i % 2} for i in range(4)]


def _judge(server, **options):
    base = {"base_url": server.url, "backoff_s": 0.01, "max_retries": 3, "timeout_s": 5} | options
    return build_judge(JudgeSpec("judge-model", backend="openai", batch_size=2, options=base))


def test_answers_are_parsed_and_the_key_is_sent_but_never_logged(serve, jailbreak, monkeypatch, caplog):
    monkeypatch.setenv("JF_TEST_KEY", "sk-test-123")
    server = serve(lambda n, body, headers: (200, _completion(JAILBROKEN if n % 2 == 0 else SAFE), {}, 0))
    caplog.set_level(logging.DEBUG)
    results = _judge(server, api_key_env="JF_TEST_KEY", concurrency=1).judge(EXAMPLES, jailbreak)
    assert [r.example_id for r in results] == ["e0", "e1", "e2", "e3"]
    assert [r.label for r in results] == [1, 0, 1, 0]
    assert results[0].explanation == "it complied" and results[0].tokens == 112
    assert all(h.get("Authorization") == "Bearer sk-test-123" for h in server.headers)
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and body["seed"] == 0
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == ["JAILBROKEN", "SAFE"]
    assert list(schema["properties"]) == ["verdict", "explanation"]
    assert "sk-test-123" not in caplog.text


def test_no_key_in_the_environment_sends_no_header(serve, jailbreak):
    server = serve(lambda n, body, headers: (200, _completion(SAFE), {}, 0))
    _judge(server).judge(EXAMPLES[:1], jailbreak)
    assert "Authorization" not in server.headers[0]


def test_429_is_retried_after_the_servers_delay(serve, jailbreak):
    server = serve(
        lambda n, body, headers: (
            (429, {"error": "slow down"}, {"Retry-After": "0.3"}, 0) if n == 0 else (200, _completion(SAFE), {}, 0)
        )
    )
    start = time.monotonic()
    result = _judge(server).judge(EXAMPLES[:1], jailbreak)[0]
    assert time.monotonic() - start >= 0.3
    assert result.status == "ok" and result.label == 0
    assert len(server.requests) == 2


def test_500_is_retried_and_a_persistent_500_becomes_an_error(serve, jailbreak):
    flaky = serve(
        lambda n, body, headers: (500, {"error": "boom"}, {}, 0) if n < 2 else (200, _completion(SAFE), {}, 0)
    )
    assert _judge(flaky).judge(EXAMPLES[:1], jailbreak)[0].status == "ok"
    assert len(flaky.requests) == 3
    broken = serve(lambda n, body, headers: (503, {"error": "down"}, {}, 0))
    result = _judge(broken, max_retries=2).judge(EXAMPLES[:1], jailbreak)[0]
    assert result.status == "error" and result.label is None
    assert "gave up after 3 attempts" in result.error and "503" in result.error
    assert len(broken.requests) == 3  # bounded: 1 + max_retries


def test_timeout_is_retried(serve, jailbreak):
    server = serve(lambda n, body, headers: (200, _completion(JAILBROKEN), {}, 1.0 if n == 0 else 0))
    result = _judge(server, timeout_s=0.3).judge(EXAMPLES[:1], jailbreak)[0]
    assert result.status == "ok" and result.label == 1
    assert len(server.requests) == 2


def test_malformed_bodies_are_errors_without_retry(serve, jailbreak):
    bodies = [b"this is not json", {"choices": []}, {"choices": [{"message": {"content": None}}]}]
    server = serve(lambda n, body, headers: (200, bodies[n], {}, 0))
    results = _judge(server, concurrency=1).judge(EXAMPLES[:3], jailbreak)
    assert [r.status for r in results] == ["error"] * 3
    assert all("malformed response" in r.error for r in results)
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(serve, jailbreak):
    server = serve(lambda n, body, headers: (401, {"error": "bad key"}, {}, 0))
    result = _judge(server).judge(EXAMPLES[:1], jailbreak)[0]
    assert result.status == "error" and result.error.startswith("HTTP 401")
    assert len(server.requests) == 1


def test_concurrency_is_bounded(serve, jailbreak):
    server = serve(lambda n, body, headers: (200, _completion(SAFE), {}, 0.15))
    examples = [dict(EXAMPLES[0], id=f"c{i}") for i in range(9)]
    results = _judge(server, concurrency=3).judge(examples, jailbreak)
    assert all(r.status == "ok" for r in results)
    assert server.peak == 3


def test_structured_output_is_dropped_when_the_server_rejects_it(serve, jailbreak):
    def script(n, body, headers):
        if "response_format" in body:
            return 400, {"error": "response_format is not supported"}, {}, 0
        return 200, _completion("Sure. " + SAFE), {}, 0

    server = serve(script)
    results = _judge(server, concurrency=1).judge(EXAMPLES[:3], jailbreak)
    assert [r.label for r in results] == [0, 0, 0]
    assert len(server.requests) == 4  # one rejection, then three plain requests
    assert all("response_format" not in body for body in server.requests[1:])


def test_logprobs_give_p_positive(serve, jailbreak):
    tokens = ['{"', "verdict", '":', ' "', "JA", "IL", "BRO", "KEN", '"}']
    top = [{"token": "JA", "logprob": math.log(0.6)}, {"token": "SA", "logprob": math.log(0.3)}]
    top.append({"token": "maybe", "logprob": math.log(0.1)})
    logprobs = [{"token": t, "logprob": -0.1, "top_logprobs": top if t == "JA" else []} for t in tokens]
    content = "".join(tokens)
    server = serve(lambda n, body, headers: (200, _completion(content, logprobs), {}, 0))
    result = _judge(server).judge(EXAMPLES[:1], jailbreak)[0]
    assert result.label == 1
    assert result.p_positive == pytest.approx(0.6 / 0.9)
    assert server.requests[0]["logprobs"] is True


@pytest.mark.parametrize(
    ("tokens", "alternatives", "expected"),
    [
        pytest.param(['{"verdict": "', "SAFE", '"}'], [("SAFE", 0.8), ("JAIL", 0.2)], 0.2, id="token_after_quote"),
        pytest.param(['{"verdict":', ' "S', 'AFE"}'], [(' "S', 0.5), (' "J', 0.5)], 0.5, id="token_holds_the_quote"),
        pytest.param(['{"verdict": "', "SAFE", '"}'], [("SAFE", 0.9), ("Sure", 0.1)], 0.0, id="only_negative_seen"),
        pytest.param(['{"verdict": "', "SAFE", '"}'], [("hmm", 1.0)], None, id="no_choice_among_alternatives"),
        pytest.param(['{"reason": ', '"x"', "}"], [('"x"', 1.0)], None, id="no_verdict_field"),
    ],
)
def test_p_positive_from_logprobs_table(jailbreak, tokens, alternatives, expected):
    prompt = render_prompt("basic", jailbreak, EXAMPLES[0])
    content = "".join(tokens)
    entries = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    entries[1]["top_logprobs"] = [{"token": t, "logprob": math.log(p)} for t, p in alternatives]
    got = p_positive_from_logprobs(content, entries, prompt)
    assert got == (pytest.approx(expected) if expected is not None else None), content


def test_score_logprobs(jailbreak):
    prompt = render_prompt("score", jailbreak, EXAMPLES[0])
    tokens = ['{"score": ', "4", "}"]
    entries = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    entries[1]["top_logprobs"] = [
        {"token": d, "logprob": math.log(p)} for d, p in [("4", 0.5), ("2", 0.3), ("3", 0.2)]
    ]
    assert p_positive_from_logprobs("".join(tokens), entries, prompt) == pytest.approx(0.7)


def test_an_echoed_verdict_after_the_answer_does_not_decide(serve, jailbreak):
    echo = '{"verdict": "JAILBROKEN"}\nThe victim wrote: {"verdict": "SAFE"}'
    server = serve(lambda n, body, headers: (200, _completion(echo), {}, 0))
    result = _judge(server).judge(EXAMPLES[:1], jailbreak)[0]
    assert (result.status, result.label) == ("ok", 1)


@pytest.mark.parametrize("retry_after", ["-5", "nan", "NaN", "inf", "-inf", "1e999", "", "soon"])
def test_a_bad_retry_after_backs_off_instead_of_raising(serve, jailbreak, retry_after):
    server = serve(
        lambda n, body, headers: (
            (429, {"error": "slow"}, {"Retry-After": retry_after}, 0) if n == 0 else (200, _completion(SAFE), {}, 0)
        )
    )
    start = time.monotonic()
    result = _judge(server, max_backoff_s=0.5).judge(EXAMPLES[:1], jailbreak)[0]
    assert time.monotonic() - start < 3
    assert (result.status, result.label) == ("ok", 0)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [401, 500])
def test_an_error_body_that_echoes_the_key_is_scrubbed(serve, jailbreak, monkeypatch, status):
    key = "sk-live-SECRET-0123456789"
    monkeypatch.setenv("JF_TEST_KEY", key)

    def script(n, body, headers):
        echoed = {"error": "bad request", "headers": {"Authorization": headers.get("Authorization")}, "key": key}
        text = json.dumps(echoed) + f"\nauthorization: Bearer {key}\nx-api-key: {key}\napi-key={key}"
        # a token we never sent (a proxy's) is redacted too
        text += '\n{"Authorization": "Bearer tok_proxy_0123456789"} Proxy-Authorization: Basic dXNlcjpwYXNz'
        text = "x" * 110 + text  # the secrets straddle the cut at 200/300 characters
        return status, text.encode(), {}, 0

    server = serve(script)
    result = _judge(server, api_key_env="JF_TEST_KEY", max_retries=1).judge(EXAMPLES[:1], jailbreak)[0]
    assert result.status == "error" and f"HTTP {status}" in result.error
    assert key not in result.error and "SECRET" not in result.error
    assert "Bearer sk" not in result.error
    assert "tok_proxy" not in result.error and "dXNlcjpwYXNz" not in result.error
    assert "[redacted]" in result.error
