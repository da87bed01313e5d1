"""Trust tiers: what a request may ask of the workers that run it, and its price.

A developer picks a tier per request (DESIGN §11): ``tee`` (the default: an
attested worker), ``tee+gpu`` (GPU evidence in the worker's attested claims),
``audited`` (its answers audited at a higher rate), ``replicated`` (run on
three workers; the answer two agree on wins), each optionally with
``region=XX`` (only workers whose attested claims name that region). The
client enforces the tier; every node bills the request at the tier's
multiplier from the root, split evenly among the workers that run it.

The canonical form travels in ``Request.tier``: ``""`` for plain ``tee``,
else the tier's name, then ``,region=XX`` when a region is asked. Sans-IO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from ..chain.root_cells import RootParams
from ..pricing import Prices, TierPrices

TIERS = ("tee", "tee+gpu", "audited", "replicated")
# The root's name (root_cells.TRUST_TIERS) of each tier's multiplier.
_ROOT_NAMES = {"tee": "tee", "tee+gpu": "gpu", "audited": "audited", "replicated": "replicated"}
BP = 10_000
REPLICAS = 3  # workers a `replicated` request runs on
# The multipliers a node that follows no root bills tiers at.
DEFAULT_ROOT_PARAMS = RootParams()


class TierError(ValueError):
    """A tier that is not one of ours, or a malformed region."""


@dataclass(frozen=True)
class Tier:
    """One request's trust tier."""

    name: str = "tee"
    region: str = ""

    @property
    def gpu(self) -> bool:
        return self.name == "tee+gpu"

    @property
    def replicas(self) -> int:
        return REPLICAS if self.name == "replicated" else 1

    def wire(self) -> str:
        """The canonical form (``Request.tier``)."""
        base = "" if self.name == "tee" and not self.region else self.name
        return f"{base},region={self.region}" if self.region else base

    def __str__(self) -> str:
        return f"{self.name},region={self.region}" if self.region else self.name

    def multiplier_bp(self, root_bp: Callable[[str], int]) -> int:
        """The price multiplier (basis points), from the root's per-tier ones."""
        bp = root_bp(_ROOT_NAMES[self.name])
        if self.region:
            bp = bp * root_bp("region") // BP
        return bp


def parse_tier(text: str) -> Tier:
    """A tier as a developer writes it (``x-cocoon-tier``), or as it travels:
    ``audited``, ``tee+gpu,region=DE``, ``region=FR``; TierError otherwise."""
    name, region = "", ""
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower().startswith("region="):
            code = part[len("region=") :].strip().upper()
            if region or len(code) != 2 or not code.isalpha() or not code.isascii():
                raise TierError(f"region must be one two-letter country code, not {part!r}")
            region = code
        elif part.lower() in TIERS and not name:
            name = part.lower()
        else:
            raise TierError(
                f"unknown trust tier {part!r}; expected one of {', '.join(TIERS)}"
                " and optionally region=XX"
            )
    return Tier(name or "tee", region)


def tier_prices(prices: Prices, tier: str, replicas: int, root_bp: Callable[[str], int]) -> Prices:
    """``prices`` for one worker's share of a request of ``tier`` (canonical form)."""
    if not tier and replicas == 1:
        return prices
    bp = parse_tier(tier).multiplier_bp(root_bp)
    fields = msgspec.structs.asdict(prices)
    return TierPrices(**fields, tier_bp=bp, replicas=max(1, replicas))
