"""`cocoon attest verify`: exit codes, reasons and no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.cli import app

from .test_tdx_policy import SAMPLE_IMAGE
from .vectors import AFTER_EXPIRY, ISSUE_TIME, sample_collateral, sample_quote

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    quote = tmp_path / "quote"
    quote.write_bytes(sample_quote())
    collateral = tmp_path / "collateral.json"
    collateral.write_text(sample_collateral())
    return {"quote": quote, "collateral": collateral, "dir": tmp_path}


def _run(*args: str) -> tuple[int, str, object]:
    result = runner.invoke(app, ["attest", "verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output, result


def _verify(files: dict[str, Path], *extra: str, at: int = ISSUE_TIME) -> tuple[int, str, object]:
    return _run(
        str(files["quote"]), "--collateral", str(files["collateral"]), "--at", str(at), *extra
    )


def test_trusted_quote_prints_status_and_measurements(files: dict[str, Path]) -> None:
    code, out, _ = _verify(files)
    assert code == 0
    assert "UpToDate" in out and SAMPLE_IMAGE in out and "mr_td" in out


def test_json_output(files: dict[str, Path]) -> None:
    code, out, _ = _verify(files, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["trusted"] is True and doc["status"] == "UpToDate"
    assert doc["image_hash"] == SAMPLE_IMAGE


def _policy(files: dict[str, Path], text: str) -> str:
    path = files["dir"] / "policy.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ('image_hashes = ["' + "00" * 32 + '"]', "measurement_not_allowed"),
        ('tcb_statuses = ["OutOfDate"]', "tcb_not_allowed"),
        ('report_data = "' + "00" * 64 + '"', "report_data_mismatch"),
        ("nonsense = 1", "bad_policy"),
        ("image_hashes = [", "bad_policy"),
        ('report_data = "zz"', "bad_policy"),
    ],
)
def test_policy_refusals_give_reason(files: dict[str, Path], policy: str, reason: str) -> None:
    code, out, _ = _verify(files, "--policy", _policy(files, policy), "--json")
    assert code == 1
    assert json.loads(out)["reason"] == reason


def test_policy_pinning_the_sample_accepts(files: dict[str, Path]) -> None:
    code, _, _ = _verify(files, "--policy", _policy(files, f'image_hashes = ["{SAMPLE_IMAGE}"]'))
    assert code == 0


def test_expired_collateral(files: dict[str, Path]) -> None:
    code, out, _ = _verify(files, at=AFTER_EXPIRY)
    assert code == 1
    assert "collateral_expired" in out


def test_bad_signature(files: dict[str, Path]) -> None:
    raw = bytearray(sample_quote())
    raw[200] ^= 1
    files["quote"].write_bytes(bytes(raw))
    code, out, _ = _verify(files)
    assert code == 1 and "bad_signature" in out


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage" * 10, None, "truncated"],
    ids=["empty", "garbage", "missing", "truncated"],
)
def test_malformed_input_never_tracebacks(files: dict[str, Path], content: object) -> None:
    if content is None:
        files["quote"].unlink()
        expected = "unreadable"
    elif content == "truncated":
        files["quote"].write_bytes(sample_quote()[:1000])
        expected = "malformed"
    else:
        assert isinstance(content, bytes)
        files["quote"].write_bytes(content)
        expected = "malformed"
    code, out, _ = _verify(files, "--json")
    assert code == 1
    assert json.loads(out)["reason"] == expected


def test_garbage_collateral_and_absurd_time(files: dict[str, Path]) -> None:
    files["collateral"].write_bytes(b"\xff\xfe not json")
    code, out, _ = _verify(files, "--json")
    assert code == 1 and json.loads(out)["reason"] == "collateral_invalid"
    files["collateral"].write_text(sample_collateral())
    code, out, _ = _verify(files, "--json", at=2**70)
    assert code == 1 and json.loads(out)["reason"] == "verification_failed"
