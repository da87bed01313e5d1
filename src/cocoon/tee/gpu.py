"""Optional GPU evidence: NVIDIA confidential-computing attestation, bound into claims.

A worker whose GPU runs in confidential-computing mode can prove it (DESIGN
§3): NVIDIA's attestation SDK (``nv-attestation-sdk``, local verifier) reads
the GPU's signed attestation report for a nonce of ours, checks its
certificate chain and measurements, and returns a result token. The worker
then claims ``nvidia:sha256:<SHA-256 of that token>`` in
:attr:`cocoon.tee.claims.Claims.gpu_evidence`; the claims' report data is
what the CPU TEE quote commits to, so a verified TDX quote says that this
measured worker image saw *this* GPU attestation pass.

The nonce is SHA-256 of a domain tag and the worker's TLS public key
(:func:`gpu_nonce`): the GPU's report is about this node's key, so a token
cannot be lifted from another worker.

The SDK is optional and not a dependency of cocoon (it needs NVML and a CC
capable GPU). Where it is not installed, or it finds no such GPU, collection
is skipped with one log line and the claims carry no GPU evidence; a GPU that
is present but fails attestation is logged as a warning and likewise not
claimed. Absence of the claim is the honest statement in every case.

Not done here: peers do not re-verify the token itself (they would need the
token and NVIDIA's verifier); they rely on the measured worker image that
made the claim. Appraisal policies (``validate_token``) are future work.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from cocoon.tee.errors import AttestationError

log = logging.getLogger(__name__)

NVIDIA_SOURCE = "nvidia"
SDK_MODULE = "nv_attestation_sdk.attestation"
_NONCE_DOMAIN = b"cocoon-gpu-nonce-v1"


def gpu_nonce(tls_public_key: bytes) -> bytes:
    """The 32-byte nonce GPU evidence is collected for: bound to this node's TLS key."""
    return hashlib.sha256(_NONCE_DOMAIN + tls_public_key).digest()


@dataclass(frozen=True)
class GpuEvidence:
    """GPU attestation that passed on this node."""

    source: str
    """Which GPU evidence source produced it ("nvidia")."""
    token: str
    """The verifier's result token (for NVIDIA, the SDK's attestation token)."""
    nonce: bytes
    """The nonce it was collected for (:func:`gpu_nonce`)."""

    @property
    def claim(self) -> str:
        """What goes into ``Claims.gpu_evidence``: ``<source>:sha256:<hex>``."""
        return f"{self.source}:sha256:{hashlib.sha256(self.token.encode()).hexdigest()}"


class GpuEvidenceSource(Protocol):
    """Collects GPU evidence on the attested node."""

    @property
    def name(self) -> str:
        """The source name, the prefix of the claim."""
        ...

    def collect(self, nonce: bytes) -> GpuEvidence | None:
        """Evidence for ``nonce``, or None (logged once) where there is none to collect."""
        ...


class NvidiaGpuSource:
    """GPU evidence from ``nv-attestation-sdk``'s local verifier, if installed."""

    name: str = NVIDIA_SOURCE

    def _sdk(self) -> Any:
        try:
            return importlib.import_module(SDK_MODULE)
        except ImportError:
            return None

    def collect(self, nonce: bytes) -> GpuEvidence | None:
        sdk = self._sdk()
        if sdk is None:
            log.info("GPU evidence skipped: nv-attestation-sdk is not installed")
            return None
        # A foreign SDK over NVML: it raises whatever its layers raise when
        # there is no GPU or driver, so its boundary catches broadly and
        # turns every failure into "no GPU evidence", never into a claim.
        try:
            client = sdk.Attestation()
            client.set_name("cocoon-worker")
            client.set_nonce(nonce.hex())
            client.add_verifier(sdk.Devices.GPU, sdk.Environment.LOCAL, "", "")
            evidence = client.get_evidence()
        except Exception as exc:
            log.info("GPU evidence skipped: no confidential-computing GPU found (%s)", exc)
            return None
        if not evidence:
            log.info("GPU evidence skipped: no confidential-computing GPU found")
            return None
        try:
            passed = bool(client.attest(evidence))
            token = str(client.get_token()) if passed else ""
        except Exception as exc:
            log.warning("GPU attestation failed, no GPU evidence claimed: %s", exc)
            return None
        if not passed or not token:
            log.warning("GPU attestation failed, no GPU evidence claimed")
            return None
        return GpuEvidence(source=NVIDIA_SOURCE, token=token, nonce=nonce)


def gpu_source_by_name(name: str) -> GpuEvidenceSource:
    """The GPU evidence source configured as ``name``; raise AttestationError."""
    if name == NVIDIA_SOURCE:
        return NvidiaGpuSource()
    raise AttestationError(
        "unknown_gpu_source", f"unknown GPU evidence source {name!r}; known: {NVIDIA_SOURCE}"
    )


def collect_gpu_evidence(source: str, tls_public_key: bytes) -> GpuEvidence | None:
    """GPU evidence bound to ``tls_public_key`` from ``source`` ("" : none, silently)."""
    if not source:
        return None
    return gpu_source_by_name(source).collect(gpu_nonce(tls_public_key))
