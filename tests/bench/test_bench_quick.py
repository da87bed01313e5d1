"""`cocoon bench --quick` runs end to end and reports every target with numbers (not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.ports import free_port
from harness.upstream import start_upstream

pytestmark = pytest.mark.slow


def bench(out: Path, *options: str) -> tuple[str, dict[str, Any]]:
    """Run `cocoon bench` into `out`; its output and its JSON report."""
    finished = subprocess.run(
        [sys.executable, "-m", "cocoon.cli", "bench", *options, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout, json.loads((out / "report.json").read_text())


def bench_beside_peer(
    tmp_path: Path, model: str, *options: str
) -> tuple[str, Path, dict[str, Any]]:
    """`cocoon bench --targets direct` beside a peer (the in-project upstream, started
    by hand, serving `model`): the peer's URL, the report's folder and the report."""
    peer, peer_url = start_upstream(
        tmp_path / "peer.log", "--model", model, "--default-max-tokens", "16"
    )
    try:
        out = tmp_path / "bench"
        _, report = bench(out, "--targets", "direct", "--target", f"peer={peer_url}/", *options)
    finally:
        peer.terminate()
        peer.wait(10)
    return peer_url, out, report


def test_quick_bench_reports_every_target(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    stdout, report = bench(out, "--quick", "--max-seconds", "0.3")
    assert "report:" in stdout

    measured = {
        (r["target"], r["load"]["mode"], r["load"]["concurrency"]) for r in report["results"]
    }
    for target in ("direct", "cocoon"):
        for mode in ("plain", "stream"):
            for level in (1, 16):
                assert (target, mode, level) in measured
    if not any(r["target"] == "litellm" for r in report["results"]):
        # Without the bench extra, one line says how to get the comparison.
        assert any("pip install -e '.[bench]'" in note for note in report["notes"])

    for result in report["results"]:
        assert result["requests"] > 0, result
        assert result["errors"] == 0, result["error_examples"]
        assert result["requests_per_s"] > 0
        # Every answer is exactly the asked-for 64 tokens, whatever the path.
        assert result["tokens"] == 64 * result["requests"]
        assert result["latency_ms"]["p50"] > 0
        if result["load"]["mode"] == "stream":
            assert result["ttft_ms"]["p99"] >= result["ttft_ms"]["p50"] > 0
            assert result["gap_ms"] is not None
        if result["target"] == "cocoon":
            assert {"proxy1", "worker1", "client", "upstream"} <= set(result["processes"])
            proxy = result["processes"]["proxy1"]
            assert proxy["cpu_s_per_1k_requests"] is not None
            assert proxy["peak_rss_mb"] > 0

    assert {(r["versus"], r["mode"]) for r in report["ratios"]} >= {
        ("direct", "plain"),
        ("direct", "stream"),
    }
    assert report["goals"]
    table = (out / "report.md").read_text()
    assert "| cocoon | stream | 16 |" in table


@pytest.mark.engine
def test_the_real_engine_is_measured_directly_and_through_cocoon(tmp_path: Path) -> None:
    _, report = bench(
        tmp_path / "bench",
        *("--engine", "llama", "--targets", "direct,cocoon", "--workers", "1"),
        *("--concurrency", "1", "--modes", "stream", "--tokens", "8", "--max-seconds", "0.5"),
    )
    assert report["settings"]["engine"].startswith("llama")
    results = {r["target"]: r for r in report["results"]}
    assert set(results) == {"direct", "cocoon"}
    for result in results.values():
        assert result["requests"] > 0
        assert result["errors"] == 0, result["error_examples"]
        # Greedy decoding: the same answer, cut at the same length, on both paths.
        assert result["tokens"] == 8 * result["requests"]
        assert result["ttft_ms"]["p50"] > 0


def test_trust_tiers_are_measured_beside_tee(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    _, report = bench(
        out,
        *("--targets", "cocoon", "--tiers", "replicated,audited", "--concurrency", "1"),
        *("--modes", "plain,stream", "--max-seconds", "0.3", "--tokens", "8"),
    )
    targets = {r["target"] for r in report["results"]}
    assert targets == {"cocoon", "cocoon[replicated]", "cocoon[audited]"}
    assert report["settings"]["cocoon_workers"] == 3  # replicated needs three
    for result in report["results"]:
        assert result["requests"] > 0 and result["errors"] == 0, result["error_examples"]
    table = (out / "report.md").read_text()
    assert "## Trust tiers" in table and "| replicated | plain | 1 |" in table


def test_a_running_endpoint_is_measured_beside_the_built_in_targets(tmp_path: Path) -> None:
    # The peer: the in-project upstream, started by hand and serving another model name,
    # so that only --target-model makes its requests valid.
    peer_url, out, report = bench_beside_peer(
        tmp_path,
        "peer-model",
        *("--target-model", "peer-model", "--concurrency", "1,4"),
        *("--modes", "plain,stream", "--max-seconds", "0.3", "--tokens", "8"),
    )
    measured = {
        (r["target"], r["load"]["mode"], r["load"]["concurrency"]) for r in report["results"]
    }
    assert measured == {
        (target, mode, level)
        for target in ("direct", "peer")
        for mode in ("plain", "stream")
        for level in (1, 4)
    }
    for result in report["results"]:
        assert result["requests"] > 0 and result["errors"] == 0, result["error_examples"]
        assert result["tokens"] == 8 * result["requests"]
    assert report["settings"]["external"] == f"peer={peer_url}"
    assert report["settings"]["external_model"] == "peer-model"
    assert "| peer | stream | 4 |" in (out / "report.md").read_text()


def test_rounds_run_each_load_on_every_target_back_to_back(tmp_path: Path) -> None:
    _, out, report = bench_beside_peer(
        tmp_path,
        "synthetic-small",
        *("--rounds", "2", "--concurrency", "1,4", "--modes", "plain"),
        *("--max-seconds", "0.3", "--tokens", "8"),
    )
    order = [(r["round"], r["load"]["concurrency"], r["target"]) for r in report["results"]]
    assert order == [
        (0, 1, "direct"), (0, 1, "peer"), (0, 4, "direct"), (0, 4, "peer"),
        (1, 1, "peer"), (1, 1, "direct"), (1, 4, "peer"), (1, 4, "direct"),
    ]  # fmt: skip
    for result in report["results"]:
        assert result["requests"] > 0 and result["errors"] == 0, result["error_examples"]
    assert report["settings"]["rounds"] == 2
    assert "| peer #2 | plain | 4 |" in (out / "report.md").read_text()


def test_cocoon_with_payments_is_measured_beside_cocoon_without(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    _, report = bench(
        out,
        *("--targets", "cocoon,cocoon-unpaid", "--payments", "--concurrency", "1"),
        *("--modes", "plain", "--max-seconds", "0.3", "--tokens", "8"),
    )
    results = {r["target"]: r for r in report["results"]}
    assert set(results) == {"cocoon", "cocoon-unpaid"}
    for result in results.values():
        assert result["requests"] > 0 and result["errors"] == 0, result["error_examples"]
    # Two networks: only the paid one has a chain.
    paid, unpaid = results["cocoon"]["processes"], results["cocoon-unpaid"]["processes"]
    assert "chain" in paid and "chain" not in unpaid
    assert paid["client"]["peak_rss_mb"] > 0 and unpaid["client"]["peak_rss_mb"] > 0
    [ratio] = report["ratios"]
    assert ratio["versus"] == "cocoon-unpaid" and ratio["ratio"] > 0
    tail = [g for g in report["goals"] if g["goal"].startswith("non-streamed p99 at c=1")]
    assert tail and tail[0]["met"] is not None


class _WholePeer(BaseHTTPRequestHandler):
    """A peer that holds each streamed answer to its end and sends it in one write."""

    TOKENS = 8

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        text = b"".join(
            b'data: {"choices":[{"index":0,"delta":{"content":"t "}}]}\n\n'
            for _ in range(self.TOKENS)
        )
        usage = b'data: {"choices":[],"usage":{"completion_tokens":%d}}\n\n' % self.TOKENS
        body = text + usage + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        body = b'{"object":"list","data":[{"id":"synthetic-small","object":"model"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_a_peer_that_sends_streams_whole_is_named_when_tokens_are_paced(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WholePeer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "bench"
        _, report = bench(
            out,
            *("--targets", "direct", "--token-delay-ms", "2", "--tokens", "8"),
            *("--target", f"whole=http://127.0.0.1:{server.server_port}/v1"),
            *("--concurrency", "1", "--modes", "stream", "--max-seconds", "0.3"),
        )
    finally:
        server.shutdown()
        server.server_close()
    shares = {r["target"]: r["whole_answers"] for r in report["results"]}
    assert shares["whole"] == 1.0
    assert shares["direct"] < 0.5  # tokens 2 ms apart arrive apart
    notes = [note for note in report["notes"] if "arrived whole" in note]
    assert len(notes) == 1 and notes[0].startswith("whole, streamed at c=1: 100% of answers")
    assert "| whole | stream | 1 |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("peer", "expected NAME=URL"),
        ("peer=ftp://host/v1", "http:// or https://"),
        ("direct=http://127.0.0.1:9/v1", "must differ"),
    ],
)
def test_a_bad_target_is_one_clear_error(tmp_path: Path, spec: str, says: str) -> None:
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "cocoon.cli", "bench", "--targets", "direct"),
            *("--target", spec, "--out", str(tmp_path / "bench")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert says in finished.stderr
    assert not (tmp_path / "bench").exists()


def test_an_endpoint_that_does_not_answer_is_skipped_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "cocoon.cli", "bench", "--targets", "direct"),
            *("--concurrency", "1", "--modes", "plain", "--max-seconds", "0.2", "--out", str(out)),
            *("--target", f"gone=http://127.0.0.1:{free_port()}/v1"),
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert finished.returncode == 1  # incomplete: a target asked for was not measured
    report = json.loads((out / "report.json").read_text())
    assert {r["target"] for r in report["results"]} == {"direct"}
    assert any(note.startswith("gone: skipped") for note in report["notes"])
