"""The TEE side of `cocoon up`: which kinds of (simulated) TEE the network mixes,
the images it pins, and the environment that puts each node on its kind."""

from __future__ import annotations

from .children import (
    UpError,
)


def tee_kinds(tee: str) -> list[str]:
    """The simulated TEEs of ``--tee``: one ("sim-tdx"), or a mix ("sim-tdx,sim-snp")
    that proxies and workers take in turn."""
    from .tee.sim_snp import SIM_SNP_PROVIDER
    from .tee.sim_tdx import SIM_TDX_PROVIDER

    kinds = [k.strip() for k in tee.split(",") if k.strip()]
    known = (SIM_TDX_PROVIDER, SIM_SNP_PROVIDER)
    if not kinds or any(k not in known for k in kinds) or len(set(kinds)) != len(kinds):
        raise UpError(
            f"cocoon up supports --tee none, {', '.join(known)} or a mix such as"
            f" {','.join(known)}; not {tee!r}"
        )
    return kinds


def build_images(tee: str) -> list[str]:
    """The image hash of this build under each TEE of ``--tee`` (what the root lists)."""
    from .tee.sim_snp import SIM_SNP_PROVIDER
    from .tee.sim_snp import local_build_platform as snp_platform
    from .tee.sim_tdx import local_build_platform

    return [
        snp_platform().image_hash if kind == SIM_SNP_PROVIDER else local_build_platform().image_hash
        for kind in tee_kinds(tee)
    ]


def node_tee(tee: str, role: str, index: int) -> dict[str, str]:
    """The provider of the ``index``-th node of ``role`` (a mix is taken in turn)."""
    if tee == "none":
        return {}
    kinds = tee_kinds(tee)
    return {f"COCOON_{role}_TEE__PROVIDER": kinds[index % len(kinds)]}


def tee_environment(provider: str) -> dict[str, str]:
    """COCOON_<ROLE>_TEE__* for every role: the provider, and a policy pinning this build.

    For the simulated TEEs the allowed images are the simulated measurements of
    this very build, so a node running other code is refused (DESIGN §3).
    ``provider`` may name a mix ("sim-tdx,sim-snp"): every node then accepts
    this build under each, and :func:`node_tee` says which one a node runs.
    """
    kinds = tee_kinds(provider)
    env = {}
    for role in ("PROXY", "WORKER", "CLIENT"):
        env[f"COCOON_{role}_TEE__PROVIDER"] = kinds[0]
        env[f"COCOON_{role}_TEE__IMAGE_HASHES"] = ",".join(build_images(provider))
    return env
