"""A judge behind an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, Ollama).

Requests go out with bounded concurrency; 429, 5xx, timeouts and dropped connections are retried
with exponential backoff plus jitter (a ``Retry-After`` header is honoured, up to the cap). JSON /
structured output is asked for when the template allows (``json_schema`` with the category's two
verdict words as an enum); a server that rejects it with 400/422 is asked again without it, and
this judge stops asking. When the server returns logprobs, P(positive) is read from the
alternatives at the verdict token. A request that still fails becomes ``status="error"`` for that
item only.

Spec options: ``base_url`` (default ``https://api.openai.com/v1``), ``model`` (overrides
``spec.model`` as the name sent), ``api_key_env`` (default ``OPENAI_API_KEY``; the key is sent as a
bearer token and never logged; no header when the variable is unset, as local servers expect),
``concurrency`` (default ``spec.batch_size``), ``timeout_s`` (60), ``max_retries`` (5),
``backoff_s`` (1.0), ``max_backoff_s`` (60), ``response_format`` (``json_schema`` | ``json_object``
| ``none``), ``logprobs`` (True), ``top_logprobs`` (5), ``extra_body`` (merged into each request).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.options import OpenAIOptions
from evaluation.types import JudgeSpec
from recipes.prompts import RenderedPrompt


__all__ = ["OpenAIJudge", "p_positive_from_logprobs", "response_schema"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429}
# An auth header (or key field) echoed in an error body: its value is redacted before the text is kept.
_AUTH_VALUE = re.compile(
    r"((?:proxy-)?authorization|x-api-key|api[-_]key|access[-_]token)([\"']?\s*[:=]\s*[\"']?)"
    r"(?:(bearer|basic|token)\s+)?[^\s\"',;}]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_FIELD_START = {"verdict": re.compile(r'"verdict"\s*:\s*"'), "score": re.compile(r'"score"\s*:\s*"?')}


def response_schema(prompt: RenderedPrompt) -> dict[str, Any]:
    """A JSON schema for the answer this prompt asks for, keys in the order the template wants."""
    category, template = prompt.category, prompt.template
    if template.answer == "score":
        properties = {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}, "explanation": {"type": "string"}}
    elif template.answer == "review":
        properties = {
            "review": {"type": "string", "enum": ["correct", "not_correct"]},
            "verdict": {"type": "string", "enum": [category.positive, category.negative, ""]},
            "explanation": {"type": "string"},
        }
    elif template.verdict_first:
        properties = {
            "verdict": {"type": "string", "enum": [category.positive, category.negative]},
            "explanation": {"type": "string"},
        }
    else:
        properties = {
            "reasoning": {"type": "string"},
            "verdict": {"type": "string", "enum": [category.positive, category.negative]},
        }
    return {
        "type": "json_schema",
        "json_schema": {
            "name": f"{template.answer}_answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def _classify(text: str, choices: list[str]) -> int | None:
    """Which choice a token (the start of the answer word) begins, or None if none or several."""
    text = text.strip().strip("\"'").upper()
    if not text:
        return None
    hits = [
        i for i, choice in enumerate(choices) if choice.upper().startswith(text) or text.startswith(choice.upper())
    ]
    return hits[0] if len(hits) == 1 else None


def p_positive_from_logprobs(content: str, tokens: list[dict[str, Any]], prompt: RenderedPrompt) -> float | None:
    """P(positive) from the top alternatives at the token where the verdict (or score) begins.

    ``tokens`` is ``choices[0].logprobs.content``: one ``{token, logprob, top_logprobs}`` per
    generated token. The field read is the one the parser reads: the first for a verdict-first
    template, the last for a reasoning-first one. Returns None when the alternatives hold neither choice.
    """
    answer = prompt.template.answer
    if answer not in _FIELD_START or not tokens:
        return None
    matches = list(_FIELD_START[answer].finditer(content))
    if not matches:
        return None
    offset = (matches[0] if prompt.template.verdict_first else matches[-1]).end()
    position = 0
    for entry in tokens:
        token = str(entry.get("token", ""))
        end = position + len(token)
        if end > offset:
            lead = content[position:offset]
            choices = prompt.choices
            mass = [0.0] * len(choices)
            alternatives = entry.get("top_logprobs") or [{"token": token, "logprob": entry.get("logprob", 0.0)}]
            for alt in alternatives:
                alt_token = str(alt.get("token", ""))
                if not alt_token.startswith(lead):
                    continue
                index = _classify(alt_token[len(lead) :], choices)
                if index is not None:
                    mass[index] += math.exp(float(alt.get("logprob", -math.inf)))
            total = sum(mass)
            if total <= 0:
                return None
            if answer == "score":
                return sum(mass[prompt.template.score_threshold - 1 :]) / total
            return mass[0] / total
        position = end
    return None


class OpenAIJudge(PromptJudge):
    """A judge served over HTTP (see the module docstring for its options)."""

    options_class = OpenAIOptions

    def __init__(self, spec: JudgeSpec):
        super().__init__(spec)
        options = self.options
        self.base_url = options.base_url.rstrip("/")
        self.model_name = options.model if options.model is not None else spec.model
        self.api_key_env = options.api_key_env
        self.concurrency = max(1, options.concurrency if options.concurrency is not None else spec.batch_size)
        self.timeout_s = options.timeout_s
        self.max_retries = options.max_retries
        self.backoff_s = options.backoff_s
        self.max_backoff_s = options.max_backoff_s
        self.response_format = options.response_format
        self.logprobs = options.logprobs
        self.top_logprobs = options.top_logprobs
        self.extra_body = dict(options.extra_body)
        self._lock = threading.Lock()
        self._random = random.Random(self.seed)

    # -- request building ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, prompt: RenderedPrompt, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": prompt.messages,
            "temperature": self.spec.temperature,
            "max_tokens": self.spec.max_new_tokens,
            "seed": seed,
        }
        if self.response_format == "json_schema":
            body["response_format"] = response_schema(prompt)
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        return body | self.extra_body

    def _drop_feature(self, body: dict[str, Any], status: int) -> bool:
        """After a 400/422, stop asking for structured output (first) or logprobs; False if neither."""
        with self._lock:
            if "response_format" in body:
                if self.response_format != "none":
                    logger.warning("%s: server answered %d to response_format; asking without it", self.name, status)
                self.response_format = "none"
                body.pop("response_format")
                return True
            if "logprobs" in body:
                if self.logprobs:
                    logger.warning("%s: server answered %d to logprobs; asking without them", self.name, status)
                self.logprobs = False
                body.pop("logprobs")
                body.pop("top_logprobs", None)
                return True
        return False

    def _scrub(self, text: str, limit: int) -> str:
        """Server text fit to keep: the key and any auth header value redacted, then cut to ``limit``."""
        key = os.environ.get(self.api_key_env, "")
        if key:
            text = text.replace(key, "[redacted]")
        text = _AUTH_VALUE.sub(
            lambda m: m.group(1) + m.group(2) + (f"{m.group(3)} " if m.group(3) else "") + "[redacted]", text
        )
        return _BEARER.sub(r"\1 [redacted]", text)[:limit]

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = math.nan  # an HTTP date: fall back to our own backoff
            if math.isfinite(seconds) and seconds >= 0:
                return min(seconds, self.max_backoff_s)
            if seconds == math.inf:
                return self.max_backoff_s
        with self._lock:
            jitter = self._random.uniform(0, self.backoff_s)
        return min(self.backoff_s * 2**attempt + jitter, self.max_backoff_s)

    # -- one request -----------------------------------------------------------------------------

    def _request(self, client: httpx.Client, prompt: RenderedPrompt, seed: int) -> Completion:
        body = self._body(prompt, seed)
        url = f"{self.base_url}/chat/completions"
        attempt, last = 0, ""
        while True:
            retry_after = None
            try:
                response = client.post(url, json=body, headers=self._headers())
            except httpx.TimeoutException as error:
                last = f"timeout after {self.timeout_s:g}s ({type(error).__name__})"
            except httpx.TransportError as error:
                last = f"connection failed: {type(error).__name__}: {self._scrub(str(error), 300)}"
            else:
                status = response.status_code
                if status == 200:
                    return self._read(response, prompt)
                if status in (400, 422) and self._drop_feature(body, status):
                    continue
                if status not in _RETRY_STATUS and status < 500:
                    return Completion(error=f"HTTP {status}: {self._scrub(response.text, 300)}")
                last = f"HTTP {status}: {self._scrub(response.text, 200)}"
                retry_after = response.headers.get("retry-after")
            if attempt >= self.max_retries:
                return Completion(error=f"gave up after {attempt + 1} attempts: {last}")
            delay = self._delay(attempt, retry_after)
            logger.info("%s: %s; retry %d in %.2fs", self.name, last, attempt + 1, delay)
            time.sleep(delay)
            attempt += 1

    def _read(self, response: httpx.Response, prompt: RenderedPrompt) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            detail = self._scrub(f"{error}): {response.text}", 300)
            return Completion(error=f"malformed response ({type(error).__name__}: {detail}")
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        logprobs = (choice.get("logprobs") or {}).get("content") or []
        p_positive = p_positive_from_logprobs(content, logprobs, prompt) if logprobs else None
        return Completion(text=content, tokens=tokens, p_positive=p_positive)

    def complete(self, prompts: list[RenderedPrompt], *, seed: int, ids: list[str] | None = None) -> list[Completion]:
        """Send every prompt, at most ``concurrency`` at a time; answers come back in order."""
        timeout = httpx.Timeout(self.timeout_s)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        with (
            httpx.Client(timeout=timeout, limits=limits) as client,
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
        ):
            return list(pool.map(lambda p: self._request(client, p, seed), prompts))
