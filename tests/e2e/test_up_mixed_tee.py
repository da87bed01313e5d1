"""`cocoon up --tee sim-tdx,sim-snp`: a network of simulated TDX and SEV-SNP nodes that
a client verifies (each kind by its own code) and uses through the OpenAI SDK."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from .conftest import get_json, start_up, stop_up, wait_for

pytestmark = pytest.mark.slow


def test_mixed_tee_network_is_verified_and_used(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--tee", "sim-tdx,sim-snp", "--workers", "2")
    try:
        attestation = wait_for(
            lambda: (
                (doc := get_json(f"{up.base_url}/attestation")) and len(doc["workers"]) == 2 and doc
            ),
            timeout=30,
        )
        assert attestation["node"]["tee"] == "tdx"
        kinds = {w["provider"]: w for w in attestation["workers"]}
        assert set(kinds) == {"sim-tdx", "sim-snp"}
        snp, tdx = kinds["sim-snp"], kinds["sim-tdx"]
        assert snp["trusted"] and snp["tee"] == "sev-snp"
        assert "simulated SEV-SNP report verified" in snp["attestation"]
        assert len(snp["measurements"]["measurement"]) == 96
        assert tdx["trusted"] and tdx["tee"] == "tdx"
        assert "simulated TDX quote verified" in tdx["attestation"]
        # One build, one image notion: each kind's image of this build, both pinned.
        assert snp["measurements"]["image_hash"] != tdx["measurements"]["image_hash"]
        assert attestation["refused_workers"] == {}
        client = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=30)
        for _ in range(12):
            answer = client.chat.completions.create(
                model=up.models[0], messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            assert answer.usage is not None and answer.usage.completion_tokens == 3
        stats = get_json(f"{up.proxy_status}/jsonstats")
        assert stats["refused_connections"] == {}
        # The proxies admitted workers of both kinds, and together they served all 12.
        workers = [w for p in up.proxies.values() for w in get_json(f"{p}/jsonstats")["workers"]]
        assert {w["tee"] for w in workers} == {"tdx", "sev-snp"}
        assert sum(w["served"] for w in workers) == 12
    finally:
        assert stop_up(up) == 0
