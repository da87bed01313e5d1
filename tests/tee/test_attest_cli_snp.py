"""`cocoon attest verify` on SEV-SNP reports: the kind read from the input, exit codes
and reasons, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from cocoon.cli import app
from cocoon.tee.sim_snp import SimSnpProvider, platform_for_image
from cocoon.tee.snp_policy import SnpPolicy

from .vectors import SNP_AFTER_VCEK, SNP_VECTOR_TIME, snp_chain, snp_report, snp_vcek

runner = CliRunner()
DATA = bytes(range(64))


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["attest", "verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def real(tmp_path: Path) -> dict[str, Path]:
    files = {"report": snp_report(), "vcek": snp_vcek(), "chain": snp_chain()}
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    out["dir"] = tmp_path
    return out


def _real(files: dict[str, Path], *extra: str, at: int = SNP_VECTOR_TIME) -> dict[str, object]:
    code, out = _run(
        str(files["report"]),
        *("--vcek", str(files["vcek"]), "--chain", str(files["chain"])),
        *("--at", str(at), "--json", *extra),
    )
    doc = json.loads(out)
    assert (code == 0) == doc["trusted"]
    return dict(doc)


def test_the_real_report_is_a_debug_guest_shown_with_its_measurement(
    real: dict[str, Path],
) -> None:
    doc = _real(real)
    assert doc["reason"] == "debug_guest" and doc["kind"] == "sev-snp"
    assert str(doc["measurement"]).startswith("b07af9620f3b839b")
    code, out = _run(str(real["report"]), "--vcek", str(real["vcek"]), "--at", "1700000000")
    assert code == 1 and "refused (debug_guest)" in out
    # One line saying that what could be checked held, and how to look at it anyway.
    assert out.strip().count("\n") == 0
    assert "signature and chain verified" in out and "allow_debug = true" in out


def _allow_debug(files: dict[str, Path]) -> str:
    path = files["dir"] / "debug.toml"
    path.write_text("allow_debug = true\n")
    return str(path)


def test_an_allow_debug_policy_accepts_the_real_report(real: dict[str, Path]) -> None:
    code, out = _run(
        str(real["report"]),
        *("--vcek", str(real["vcek"]), "--chain", str(real["chain"])),
        *("--at", str(SNP_VECTOR_TIME), "--policy", _allow_debug(real)),
    )
    assert code == 0, out
    lines = out.splitlines()
    assert (
        lines[0]
        == "trusted: SEV-SNP report v2 (Milan), TCB bootloader 2, tee 0, snp 5, microcode 68"
    )
    assert "  measurement: b07af9620f3b839b" in out and "  debug: true" in out
    assert "warning: a debug guest" in out and "allow_debug" in out
    doc = _real(real, "--policy", _allow_debug(real))
    assert doc["trusted"] is True and doc["debug_allowed"] is True
    assert doc["tcb"] == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert str(doc["measurement"]).startswith("b07af9620f3b839b")
    # allow_debug relaxes the debug bit only: the rest of the policy still applies.
    strict = real["dir"] / "strict.toml"
    strict.write_text("allow_debug = true\nmin_tcb = { snp = 6 }\n")
    assert _real(real, "--policy", str(strict))["reason"] == "tcb_too_low"


@pytest.mark.parametrize("offset", [0x90, 0x2A0], ids=["measurement", "signature"])
def test_a_tampered_debug_report_is_bad_signature_even_when_debug_is_allowed(
    real: dict[str, Path], offset: int
) -> None:
    # The signature is checked before the policy: allow_debug never lets a forgery by.
    real["report"].write_bytes(_flip(snp_report(), offset))
    assert _real(real, "--policy", _allow_debug(real))["reason"] == "bad_signature"
    assert _real(real)["reason"] == "bad_signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f["report"].write_bytes(snp_report()[:-1]), "malformed"),
        (lambda f: f["report"].write_bytes(snp_report() + b"\x00"), "malformed"),
        (lambda f: f["report"].write_bytes(_flip(snp_report(), 0x90)), "bad_signature"),
        (lambda f: f["report"].write_bytes(_flip(snp_report(), 0x2A0)), "bad_signature"),
        (lambda f: f["chain"].write_bytes(_swapped(snp_chain())), "chain_invalid"),
        (lambda f: f["vcek"].write_bytes(SimSnpProvider().vcek), "chain_invalid"),
        (lambda f: f["vcek"].write_bytes(b"garbage"), "chain_invalid"),
        (lambda f: f["vcek"].unlink(), "unreadable"),
    ],
    ids=["truncated", "extended", "measurement", "signature", "order", "sim-vcek", "junk", "gone"],
)
def test_refusals_name_the_reason(real: dict[str, Path], change: object, reason: str) -> None:
    assert callable(change)
    change(real)
    assert _real(real)["reason"] == reason


def test_an_expired_vcek(real: dict[str, Path]) -> None:
    assert _real(real, at=SNP_AFTER_VCEK)["reason"] == "chain_invalid"


def test_without_vcek_a_usage_error(real: dict[str, Path]) -> None:
    code, out = _run(str(real["report"]), "--json")
    assert code == 1 and json.loads(out)["reason"] == "usage"


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


def _swapped(pem: bytes) -> bytes:
    parts = pem.split(b"-----END CERTIFICATE-----\n")
    return parts[1] + b"-----END CERTIFICATE-----\n" + parts[0] + b"-----END CERTIFICATE-----\n"


@pytest.fixture
def sim(tmp_path: Path) -> dict[str, Path]:
    provider = SimSnpProvider(platform=platform_for_image("cli"))
    pki = provider.pki
    out = {"dir": tmp_path}
    for name, data in {
        "report": provider.report(DATA),
        "vcek": provider.vcek,
        "chain": pki.chain_pem,
        "ark": pki.ark.public_bytes(serialization.Encoding.PEM),
        "debug": SimSnpProvider(platform=platform_for_image("cli", debug=True)).report(DATA),
    }.items():
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    return out


def _sim(
    files: dict[str, Path], *extra: str, report: str = "report"
) -> tuple[int, dict[str, object]]:
    code, out = _run(
        str(files[report]),
        *("--vcek", str(files["vcek"]), "--chain", str(files["chain"])),
        *("--root-ca", str(files["ark"]), "--at", str(SNP_VECTOR_TIME), "--json", *extra),
    )
    return code, json.loads(out)


def _policy(files: dict[str, Path], text: str) -> str:
    path = files["dir"] / "policy.toml"
    path.write_text(text)
    return str(path)


def test_a_simulated_report_is_trusted_with_measurement_and_tcb(sim: dict[str, Path]) -> None:
    code, doc = _sim(sim)
    assert code == 0 and doc["kind"] == "sev-snp" and doc["product"] == "Milan"
    assert doc["tcb"] == {"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}
    assert len(str(doc["measurement"])) == 96 and doc["report_data"] == DATA.hex()
    code, out = _run(
        str(sim["report"]),
        *("--vcek", str(sim["vcek"]), "--chain", str(sim["chain"]), "--root-ca", str(sim["ark"])),
    )
    assert code == 0 and out.startswith("trusted: SEV-SNP report v3 (Milan), TCB bootloader 4")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ("min_tcb = { snp = 30 }", "tcb_too_low"),
        ('measurements = ["' + "00" * 48 + '"]', "measurement_not_allowed"),
        ('image_hashes = ["' + "00" * 32 + '"]', "measurement_not_allowed"),
        ('report_data = "' + "00" * 64 + '"', "report_data_mismatch"),
        ("min_tcb = { nonsense = 1 }", "bad_policy"),
        ('tcb_statuses = ["UpToDate"]', "bad_policy"),  # a TDX field for an SNP report
    ],
)
def test_policy_refusals(sim: dict[str, Path], policy: str, reason: str) -> None:
    code, doc = _sim(sim, "--policy", _policy(sim, policy))
    assert code == 1 and doc["reason"] == reason


def test_a_pinning_policy_accepts(sim: dict[str, Path]) -> None:
    _, doc = _sim(sim)
    text = f'measurements = ["{doc["measurement"]}"]\nreport_data = "{DATA.hex()}"\n'
    text += "min_tcb = { snp = 22, microcode = 200 }\n"
    code, _ = _sim(sim, "--policy", _policy(sim, text))
    assert code == 0


def test_a_simulated_debug_guest(sim: dict[str, Path]) -> None:
    code, doc = _sim(sim, report="debug")
    assert code == 1 and doc["reason"] == "debug_guest"
    code, doc = _sim(sim, "--policy", _allow_debug(sim), report="debug")
    assert code == 0 and doc["debug_allowed"] is True
    code, doc = _sim(sim, "--policy", _allow_debug(sim))
    assert code == 0 and doc["debug_allowed"] is False


def test_the_nodes_policy_has_no_allow_debug() -> None:
    # Only a file read by `attest verify` can opt in; a node's SnpPolicy cannot.
    assert "allow_debug" not in {f.name for f in msgspec.structs.fields(SnpPolicy)}


def test_a_simulated_report_under_amds_roots_is_chain_invalid(sim: dict[str, Path]) -> None:
    code, out = _run(
        str(sim["report"]), "--vcek", str(sim["vcek"]), "--chain", str(sim["chain"]), "--json"
    )
    assert code == 1 and json.loads(out)["reason"] == "chain_invalid"
