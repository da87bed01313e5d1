"""The ``tdx`` provider against a directory that plays the kernel's configfs-tsm part."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cocoon.config import TeeConfig
from cocoon.node import make_credentials, peer_verifiers, provider_for
from cocoon.tee.certs import parse_certificate
from cocoon.tee.claims import report_data
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.evidence import Evidence
from cocoon.tee.policy import PeerPolicy, verify_peer
from cocoon.tee.providers import known_providers, provider_by_name, verifier_by_name
from cocoon.tee.sim_tdx import SimTdxProvider, shared_pki
from cocoon.tee.tdx_policy import TdxVerifier
from cocoon.tee.tdx_provider import DEFAULT_TSM_PATH, ConfigfsTsmProvider

NOW = 1_760_000_000
REPORT_DATA = bytes(range(64))


class FakeConfigfs(ConfigfsTsmProvider):
    """configfs-tsm as the kernel does it, in a temporary directory.

    mkdir populates ``provider`` and ``generation``; a write to ``inblob``
    bumps ``generation`` and makes ``outblob`` a (simulated) TDX quote over
    what was written. ``races`` extra generation bumps emulate another writer.
    """

    def __init__(
        self, root: Path, *, provider: str = "tdx_guest", races: int = 0, quote_for: bytes = b""
    ) -> None:
        super().__init__(root)
        self.sim = SimTdxProvider(pki=shared_pki())
        self.provider_name = provider
        self.races = races
        self.quote_for = quote_for  # non-empty: the "kernel" quotes these bytes instead
        self.writes = 0
        self.entries: list[Path] = []

    def open_entry(self) -> Path:
        entry = super().open_entry()
        (entry / "provider").write_text(self.provider_name + "\n")
        (entry / "generation").write_text("0\n")
        self.entries.append(entry)
        return entry

    def write_report_data(self, entry: Path, report_data: bytes) -> None:
        super().write_report_data(entry, report_data)
        self.writes += 1
        bump = 1
        if self.races:
            self.races -= 1
            bump = 2  # someone else wrote between our write and our read
        generation = int((entry / "generation").read_text()) + bump
        (entry / "generation").write_text(f"{generation}\n")
        written = (entry / "inblob").read_bytes()
        (entry / "outblob").write_bytes(self.sim.quote(self.quote_for or written))

    def remove_entry(self, entry: Path) -> None:
        # configfs removes the attribute files with the directory; a real one won't.
        shutil.rmtree(entry)


def sim_root_tdx_verifier() -> TdxVerifier:
    """A "tdx" verifier that trusts the simulated root, to check what the fake made."""
    pki = shared_pki()
    return TdxVerifier(collateral=lambda raw, now: pki.collateral(now), root_ca_der=pki.root_ca_der)


def test_quote_through_configfs_binds_the_report_data(tmp_path: Path) -> None:
    provider = FakeConfigfs(tmp_path)
    evidence = provider.evidence(REPORT_DATA)
    assert evidence.provider == "tdx"
    verdict = sim_root_tdx_verifier().verify(evidence, REPORT_DATA, NOW)
    assert verdict.trusted and verdict.provider == "tdx"
    # The entry was written once and removed afterwards.
    assert provider.writes == 1
    assert list(tmp_path.iterdir()) == []


def test_steps_can_be_driven_in_order(tmp_path: Path) -> None:
    provider = FakeConfigfs(tmp_path)
    entry = provider.open_entry()
    assert entry.parent == tmp_path and entry.name.startswith("cocoon-")
    provider.check_provider(entry)
    before = provider.read_generation(entry)
    provider.write_report_data(entry, REPORT_DATA)
    assert (entry / "inblob").read_bytes() == REPORT_DATA
    quote = provider.read_quote(entry)
    assert provider.read_generation(entry) == before + 1
    provider.remove_entry(entry)
    assert not entry.exists()
    assert sim_root_tdx_verifier().verify(Evidence("tdx", quote), REPORT_DATA, NOW).trusted


def test_a_raced_generation_is_retried_once(tmp_path: Path) -> None:
    provider = FakeConfigfs(tmp_path, races=1)
    evidence = provider.evidence(REPORT_DATA)
    assert provider.writes == 2
    assert sim_root_tdx_verifier().verify(evidence, REPORT_DATA, NOW).trusted


def test_a_generation_that_keeps_changing_is_refused(tmp_path: Path) -> None:
    provider = FakeConfigfs(tmp_path, races=2)
    with pytest.raises(EvidenceError) as info:
        provider.evidence(REPORT_DATA)
    assert info.value.reason == "tsm_generation_changed"
    assert provider.writes == 2
    assert list(tmp_path.iterdir()) == []  # removed on failure too


def test_absent_configfs_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-tsm"
    with pytest.raises(AttestationError) as info:
        ConfigfsTsmProvider(missing).evidence(REPORT_DATA)
    assert info.value.reason == "tsm_unavailable"
    assert str(info.value) == f"configfs-tsm not available at {missing}: not a TDX guest?"


def test_another_quote_provider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AttestationError) as info:
        FakeConfigfs(tmp_path, provider="sev_guest").evidence(REPORT_DATA)
    assert info.value.reason == "tsm_wrong_provider"
    assert list(tmp_path.iterdir()) == []


def test_a_quote_over_other_data_is_never_presented(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError) as info:
        FakeConfigfs(tmp_path, quote_for=b"\xee" * 64).evidence(REPORT_DATA)
    assert info.value.reason == "report_data_mismatch"


def test_report_data_must_be_64_bytes(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError) as info:
        FakeConfigfs(tmp_path).evidence(b"short")
    assert info.value.reason == "malformed"


def test_tdx_is_a_known_provider_at_the_kernel_path() -> None:
    assert "tdx" in known_providers()
    provider = provider_by_name("tdx")
    assert isinstance(provider, ConfigfsTsmProvider)
    assert provider.root == Path(DEFAULT_TSM_PATH) == Path(TeeConfig().tsm_path)


def test_provider_for_uses_the_configured_tsm_path(tmp_path: Path) -> None:
    provider = provider_for(TeeConfig(provider="tdx", tsm_path=str(tmp_path)))
    assert isinstance(provider, ConfigfsTsmProvider) and provider.root == tmp_path


def test_default_tdx_verifier_uses_intels_root_and_needs_collateral() -> None:
    verifier = verifier_by_name("tdx")
    assert isinstance(verifier, TdxVerifier)
    assert verifier.root_ca_der is None and verifier.trusted and verifier.provider == "tdx"
    evidence = Evidence("tdx", SimTdxProvider(pki=shared_pki()).quote(REPORT_DATA))
    with pytest.raises(EvidenceError) as info:
        verifier.verify(evidence, REPORT_DATA, NOW)
    assert info.value.reason == "collateral_unavailable"
    # With collateral but Intel's root, a quote of the simulated PKI fails DCAP.
    intel = TdxVerifier(collateral=lambda raw, now: shared_pki().collateral(now))
    with pytest.raises(EvidenceError):
        intel.verify(evidence, REPORT_DATA, NOW)


def test_configured_tdx_verifier_keeps_intels_root(tmp_path: Path) -> None:
    verifiers = peer_verifiers(TeeConfig(collateral_dir=str(tmp_path)))
    tdx = verifiers["tdx"]
    assert isinstance(tdx, TdxVerifier) and tdx.root_ca_der is None and tdx.provider == "tdx"


def test_a_node_attests_through_configfs(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    credentials = make_credentials(
        role="worker",
        network="n",
        data_dir=tmp_path / "w",
        provider=FakeConfigfs(tsm),
        models=["m"],
        now=NOW,
    )
    cert = parse_certificate(credentials.certificate)
    assert cert.evidence.provider == "tdx"
    verdict = verify_peer(
        cert,
        expected_role="worker",
        policy=PeerPolicy(network="n"),
        now=NOW,
        verifiers={"tdx": sim_root_tdx_verifier()},
    )
    assert verdict.trusted
    assert cert.evidence.quote and report_data(cert.claims) == report_data(credentials.claims)
