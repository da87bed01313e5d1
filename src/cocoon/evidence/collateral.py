"""The collateral a client puts in a bundle: the one it checks the worker's quote with."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..tee.dcap import CollateralCache
from ..tee.errors import AttestationError
from ..tee.sim_tdx import SIM_TDX_PROVIDER, shared_pki
from .bundle import Collateral, collateral_of
from .errors import BundleError
from .snp import SNP_PROVIDERS, read_crl, snp_collateral


def simulated_root_reference() -> str:
    """The simulated Intel root a sim-tdx quote chains to, by the hash of its DER."""
    return f"simulated-root:{hashlib.sha256(shared_pki().root_ca_der).hexdigest()[:16]}"


def collateral_for(
    provider: str, quote: bytes, now: int, collateral_dir: str = "", snp_crl_file: str = ""
) -> Collateral:
    """Collateral for `quote` as of `now`; BundleError("collateral_unavailable") if none.

    `collateral_dir` is where a TDX client keeps Intel's collateral; `snp_crl_file`
    the AMD CRL an SEV-SNP client checks with (the bundle carries it too).
    """
    if provider in SNP_PROVIDERS:
        return snp_collateral(provider, quote, read_crl(snp_crl_file))
    if provider == SIM_TDX_PROVIDER:
        return collateral_of(provider, simulated_root_reference(), shared_pki().collateral(now))
    if provider == "tdx":
        if not collateral_dir:
            raise BundleError(
                "collateral_unavailable", "this client keeps no TDX collateral (tee.collateral_dir)"
            )
        cache = CollateralCache(Path(collateral_dir))
        try:
            document = cache.get(quote, now)
            reference = cache.path_for(quote).stem.removeprefix("collateral-")
        except AttestationError as exc:
            raise BundleError("collateral_unavailable", str(exc)) from None
        return collateral_of(provider, reference, document)
    return collateral_of(provider, "", "")
