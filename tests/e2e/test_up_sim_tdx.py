"""`cocoon up --tee sim-tdx`: a whole network on simulated TDX, verified by real DCAP code."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from .conftest import get_json, start_up, stop_up, wait_for

pytestmark = pytest.mark.slow


def test_up_on_sim_tdx_trusts_its_own_build(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--tee", "sim-tdx", "--workers", "1")
    try:
        attestation = wait_for(
            lambda: (doc := get_json(f"{up.base_url}/attestation")) and doc["workers"] and doc
        )
        assert attestation["node"]["provider"] == "sim-tdx"
        assert attestation["proxy"]["trusted"] is True
        assert attestation["proxy"]["provider"] == "sim-tdx"
        [worker] = attestation["workers"]
        assert worker["trusted"] is True and "simulated TDX quote verified" in worker["attestation"]
        # The measurements the client verified are shown, not just a verdict.
        measured = worker["measurements"]
        assert len(measured["mr_td"]) == 96 and measured["tcb_status"] == "UpToDate"
        # One build: proxy and worker run the same image.
        assert measured["image_hash"] == attestation["proxy"]["measurements"]["image_hash"]
        assert attestation["refused_workers"] == {}
        body = json.dumps(
            {
                "model": up.models[0],
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3,
            }
        ).encode()
        request = urllib.request.Request(
            f"{up.base_url}/chat/completions", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["usage"]["completion_tokens"] == 3
        assert get_json(f"{up.proxy_status}/jsonstats")["refused_connections"] == {}
    finally:
        assert stop_up(up) == 0
