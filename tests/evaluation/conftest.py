"""Fixtures of the evaluation tests: a scripted OpenAI-compatible server, stopped after the test."""

from __future__ import annotations

import pytest
from openai_server import ScriptedServer


@pytest.fixture
def serve():
    servers = []

    def start(script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
