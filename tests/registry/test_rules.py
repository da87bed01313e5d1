"""The root's rules, applied to peers without a chain (sans-IO)."""

from __future__ import annotations

import dataclasses

import pytest

from cocoon.chain.root import RegisteredProxy, RootParams, RootState
from cocoon.chain.stake import StakeState
from cocoon.registry.rules import (
    IMAGE_NOT_ON_ROOT,
    MODEL_NOT_ON_ROOT,
    PROXY_NOT_ON_ROOT,
    STAKE_TOO_LOW,
    RootRules,
    model_hash,
    model_hash_kind,
    wanted_proxies,
)
from cocoon.tee.evidence import Verdict

TON = 1_000_000_000
IMAGE = "ab" * 32
OTHER_IMAGE = "cd" * 32
ROOT_ID = "ef" * 32
MODEL = f"SmolLM2@sha256:{ROOT_ID}"
PROXY_KEY = bytes(range(32))


def _state(**changes: object) -> RootState:
    params = RootParams(min_worker_stake=10 * TON, min_proxy_stake=20 * TON, unbonding_delay=3600)
    state = RootState(
        version=7,
        network_id=42,
        owner="0:" + "11" * 32,
        params=params,
        proxy_images=frozenset({IMAGE}),
        worker_images=frozenset({IMAGE}),
        models=frozenset({ROOT_ID, model_hash("synthetic-small")}),
        proxies=(RegisteredProxy("0:" + "22" * 32, "127.0.0.1:7400", PROXY_KEY),),
    )
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]


def _tdx(image: str) -> Verdict:
    return Verdict(True, "sim-tdx", "ok", {"image_hash": image})


def _stake(bonded: int, delay: int = 3600) -> StakeState:
    return StakeState(
        bonded_nano=bonded,
        unbonding_nano=0,
        unlock_at=0,
        unbond_delay=delay,
        slashed_nano=0,
        balance_nano=bonded,
        active=True,
    )


def test_a_model_is_listed_by_its_merkle_root_or_by_its_tagged_name() -> None:
    assert model_hash(MODEL) == ROOT_ID
    assert model_hash_kind(MODEL) == "merkle_root"
    bare = model_hash("synthetic-small")
    assert len(bare) == 64 and bare != model_hash("synthetic-large")
    assert model_hash_kind("synthetic-small") == "name"


def test_images_are_checked_per_role_and_only_for_attested_peers() -> None:
    rules = RootRules(_state(worker_images=frozenset({OTHER_IMAGE})))
    assert rules.image_refusal("worker", _tdx(OTHER_IMAGE)) is None
    refusal = rules.image_refusal("worker", _tdx(IMAGE))
    assert refusal is not None and refusal.reason == IMAGE_NOT_ON_ROOT
    assert rules.image_refusal("proxy", _tdx(IMAGE)) is None
    # No hardware attestation, no image: the lists apply to models only.
    assert rules.image_refusal("worker", Verdict(False, "none", "untrusted")) is None


def test_models_not_on_the_root_are_dropped_and_a_worker_with_none_left_is_refused() -> None:
    rules = RootRules(_state())
    other = "Other@sha256:" + "00" * 32
    assert rules.split_models([MODEL, other]) == (frozenset({MODEL}), [other])
    assert rules.model_refusal([MODEL, other]) is None
    refusal = rules.model_refusal([other])
    assert refusal is not None and refusal.reason == MODEL_NOT_ON_ROOT and other in refusal.message
    assert rules.model_allowed("synthetic-small")


@pytest.mark.parametrize(
    ("role", "stake", "refused"),
    [
        ("worker", _stake(10 * TON), False),
        ("worker", _stake(10 * TON - 1), True),
        ("worker", None, True),
        ("worker", _stake(50 * TON, delay=3599), True),  # could unbond before a slash
        ("proxy", _stake(10 * TON), True),
        ("proxy", _stake(20 * TON), False),
    ],
)
def test_stakes_must_reach_the_roles_minimum_with_the_roots_delay(
    role: str, stake: StakeState | None, refused: bool
) -> None:
    refusal = RootRules(_state()).stake_refusal(role, stake)
    assert (refusal is not None) == refused
    if refusal is not None:
        assert refusal.reason == STAKE_TOO_LOW


def test_no_minimum_means_no_stake_needed() -> None:
    params = RootParams(min_worker_stake=0, min_proxy_stake=0)
    assert RootRules(_state(params=params)).stake_refusal("worker", None) is None


def test_a_proxy_must_be_registered_under_its_key_and_run_a_listed_image() -> None:
    rules = RootRules(_state())
    assert rules.proxy_refusal(PROXY_KEY, _tdx(IMAGE)) is None
    unknown = rules.proxy_refusal(b"\x01" * 32, _tdx(IMAGE))
    assert unknown is not None and unknown.reason == PROXY_NOT_ON_ROOT
    wrong_image = rules.proxy_refusal(PROXY_KEY, _tdx(OTHER_IMAGE))
    assert wrong_image is not None and wrong_image.reason == IMAGE_NOT_ON_ROOT


def test_a_proxy_reached_is_judged_by_the_key_the_root_registers_for_its_address() -> None:
    rules = RootRules(_state())
    assert rules.reached_proxy_refusal("p:1", PROXY_KEY, PROXY_KEY, _tdx(IMAGE)) is None
    other = rules.reached_proxy_refusal("p:1", PROXY_KEY, b"\x02" * 32, _tdx(IMAGE))
    assert other is not None and other.reason == PROXY_NOT_ON_ROOT
    # A fixed address: the root vouches only for the image.
    assert rules.reached_proxy_refusal("p:1", None, b"\x02" * 32, _tdx(IMAGE)) is None
    fixed = rules.reached_proxy_refusal("p:1", None, b"\x02" * 32, _tdx(OTHER_IMAGE))
    assert fixed is not None and fixed.reason == IMAGE_NOT_ON_ROOT


def test_the_wanted_proxies_are_the_fixed_ones_and_the_roots() -> None:
    rules = RootRules(_state())
    (registered,) = rules.state.proxies
    assert wanted_proxies([], "a:1", rules) == {"a:1": None}
    assert wanted_proxies(["b:2", "root"], "a:1", rules) == {
        "b:2": None,
        registered.endpoint: PROXY_KEY,
    }
    assert wanted_proxies(["root"], "a:1", None) == {}
