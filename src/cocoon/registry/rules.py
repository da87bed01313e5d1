"""Who may serve, by one snapshot of the root contract. Sans-IO.

The root lists allowed proxy images, worker images and model ids, and the
minimum stake of each serving role (DESIGN §11). Here the clients enforce
all three for workers and proxies they meet (they verify workers
themselves), and proxies enforce them for workers: the reference Cocoon
checks the proxy image at the client and worker and model hashes at the
proxy only.

- An **image** is the attested image hash (SHA-256 over MRTD‖RTMR0..3 for
  TDX, `Verdict.measurements["image_hash"]`). A peer without hardware
  attestation (provider ``none``) has no image: the root's image lists then
  do not apply to it, and statuses say so (``images_enforced`` false).
- A **model** is listed by its Merkle root (``name@sha256:<root>``). A model
  served under a bare name has no files to hash (the synthetic backend, an
  upstream the operator did not pin); it is listed by the SHA-256 of its
  name under a domain tag, which proves nothing about weights and is
  labelled so by `model_hash_kind`.
- A **stake** counts when its bonded amount reaches the root's minimum for
  the role and its unbonding delay is at least the root's, so that stake
  can still be slashed for misbehaviour found later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..chain.root import RegisteredProxy, RootState
from ..chain.stake import StakeState
from ..tee.evidence import Verdict
from ..tee.model_id import MODEL_ID_RE

IMAGE_NOT_ON_ROOT = "image_not_on_root"
MODEL_NOT_ON_ROOT = "model_not_on_root"
STAKE_TOO_LOW = "stake_too_low"
PROXY_NOT_ON_ROOT = "proxy_not_on_root"
# A stake the chain did not answer for (yet): refused, and judged again once it does.
STAKE_UNKNOWN = "stake_unknown"
ROOT_REASONS = frozenset(
    {IMAGE_NOT_ON_ROOT, MODEL_NOT_ON_ROOT, STAKE_TOO_LOW, PROXY_NOT_ON_ROOT, STAKE_UNKNOWN}
)

# In a node's `proxies`: every proxy the root registers, followed as it changes.
ROOT_PROXIES = "root"

# Domain tag of the hash that lists a model served under a bare name.
_NAME_TAG = b"cocoon-model-name/v1\x00"


@dataclass(frozen=True)
class Refusal:
    """Why the root does not let a peer serve: a reason code and one line for people."""

    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def model_hash(model: str) -> str:
    """The 64-hex value that lists ``model`` on the root: its Merkle root for a full
    id, else the tagged SHA-256 of the bare name."""
    match = MODEL_ID_RE.match(model)
    if match is not None:
        return match.group("root")
    return hashlib.sha256(_NAME_TAG + model.encode()).hexdigest()


def model_hash_kind(model: str) -> str:
    """ "merkle_root" for a full id, "name" for a bare name (proves nothing about weights)."""
    return "merkle_root" if MODEL_ID_RE.match(model) else "name"


def image_of(verdict: Verdict) -> str | None:
    """The attested image hash, or None for a peer without hardware attestation."""
    if verdict.provider == "none":
        return None
    return verdict.measurements.get("image_hash", "").lower() or None


class RootRules:
    """The root's lists and minimums, applied to peers."""

    def __init__(self, state: RootState) -> None:
        self.state = state
        self._images = {"proxy": state.proxy_images, "worker": state.worker_images}
        self._minimum = {
            "proxy": state.params.min_proxy_stake,
            "worker": state.params.min_worker_stake,
        }

    @property
    def version(self) -> int:
        return self.state.version

    def image_refusal(self, role: str, verdict: Verdict) -> Refusal | None:
        """Refuse an attested peer whose image the root does not list for its role."""
        image = image_of(verdict)
        if image is None:
            return None  # no image to check: the root's lists apply to models only
        allowed = self._images.get(role, frozenset())
        if image in allowed:
            return None
        return Refusal(IMAGE_NOT_ON_ROOT, f"{role} image {image} is not on the root")

    def model_allowed(self, model: str) -> bool:
        return model_hash(model) in self.state.models

    def split_models(self, models: Iterable[str]) -> tuple[frozenset[str], list[str]]:
        """(the models the root lists, the ones it does not)."""
        allowed: list[str] = []
        refused: list[str] = []
        for model in models:
            (allowed if self.model_allowed(model) else refused).append(model)
        return frozenset(allowed), sorted(refused)

    def model_refusal(self, models: Iterable[str]) -> Refusal | None:
        """Refuse a worker none of whose models the root lists."""
        allowed, refused = self.split_models(models)
        if allowed or not refused:
            return None
        return Refusal(MODEL_NOT_ON_ROOT, f"{', '.join(refused)} not on the root")

    def minimum_stake(self, role: str) -> int:
        return self._minimum.get(role, 0)

    def stake_refusal(self, role: str, stake: StakeState | None) -> Refusal | None:
        """Refuse a serving peer whose stake is below the root's minimum for its role."""
        minimum = self.minimum_stake(role)
        if minimum <= 0:
            return None
        if stake is None:
            return Refusal(STAKE_TOO_LOW, f"{role} stake unknown (minimum {minimum} nanotons)")
        if stake.bonded_nano < minimum:
            return Refusal(
                STAKE_TOO_LOW,
                f"{role} stake {stake.bonded_nano} nanotons is below the minimum {minimum}",
            )
        if stake.unbond_delay < self.state.params.unbonding_delay:
            return Refusal(
                STAKE_TOO_LOW,
                f"{role} stake unbonds after {stake.unbond_delay} s, the root asks"
                f" {self.state.params.unbonding_delay} s",
            )
        return None

    def registered_proxy(self, node_key: bytes) -> RegisteredProxy | None:
        for proxy in self.state.proxies:
            if proxy.node_key == node_key:
                return proxy
        return None

    def proxy_refusal(self, node_key: bytes, verdict: Verdict) -> Refusal | None:
        """Refuse a proxy the root does not register under this node key, or whose image
        it does not list."""
        if self.registered_proxy(node_key) is None:
            return Refusal(PROXY_NOT_ON_ROOT, f"proxy key {node_key.hex()} is not on the root")
        return self.image_refusal("proxy", verdict)

    def reached_proxy_refusal(
        self, address: str, expected_key: bytes | None, presented_key: bytes, verdict: Verdict
    ) -> Refusal | None:
        """The root's word on the proxy reached at `address`: one the root registered
        (`expected_key`) must present that key; one at a fixed address (None) is held
        to the root's image list only."""
        if expected_key is None:
            return self.image_refusal("proxy", verdict)
        if presented_key != expected_key:
            return Refusal(PROXY_NOT_ON_ROOT, f"{address} presents another key than the root's")
        return self.proxy_refusal(expected_key, verdict)


def wanted_proxies(
    entries: list[str],
    default: str,
    rules: RootRules | None,
    order: Callable[[RegisteredProxy], tuple[int, float]] | None = None,
) -> dict[str, bytes | None]:
    """Address → the node key the root registers for it (None: a fixed address) of every
    proxy a node's `proxies` name (`default` when empty); ROOT_PROXIES stands for the
    root's registered proxies, in `order` when given."""
    wanted: dict[str, bytes | None] = {}
    for entry in entries or [default]:
        if entry != ROOT_PROXIES:
            wanted[entry] = None
        elif rules is not None:
            registered = list(rules.state.proxies)
            if order is not None:
                registered.sort(key=order)
            for proxy in registered:
                wanted[proxy.endpoint] = proxy.node_key
    return wanted
