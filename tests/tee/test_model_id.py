"""Model ids: the Merkle construction, its streaming, and `cocoon model hash`."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.cli import app
from cocoon.tee import model_id as mid
from cocoon.tee.model_id import ModelIdError, model_id, parse_model_id


def _leaf(path: str, content: bytes) -> bytes:
    p = path.encode()
    return hashlib.sha256(
        b"\x00"
        + struct.pack(">I", len(p))
        + p
        + struct.pack(">Q", len(content))
        + hashlib.sha256(content).digest()
    ).digest()


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_bytes(b"{}")
    (root / "weights.bin").write_bytes(b"\x01" * 3000)
    (root / "sub" / "tokenizer.json").write_bytes(b"tok")
    return root


def test_root_matches_the_documented_construction(model: Path) -> None:
    leaves = [
        _leaf("config.json", b"{}"),
        _leaf("sub/tokenizer.json", b"tok"),
        _leaf("weights.bin", b"\x01" * 3000),
    ]
    root = _node(_node(leaves[0], leaves[1]), leaves[2])  # odd leaf carried up
    assert model_id(model) == f"tiny-model@sha256:{root.hex()}"
    assert parse_model_id(model_id(model)) == ("tiny-model", root.hex())


def test_any_change_changes_the_id(model: Path) -> None:
    before = model_id(model)
    (model / "weights.bin").write_bytes(b"\x01" * 2999 + b"\x02")
    changed = model_id(model)
    assert changed != before
    (model / "weights.bin").rename(model / "weights2.bin")
    assert model_id(model) != changed
    (model / "extra").write_bytes(b"")
    assert len({before, changed, model_id(model)}) == 3


def test_streams_in_chunks(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = model_id(model)
    monkeypatch.setattr(mid, "CHUNK", 7)  # many reads per file; same result
    assert model_id(model) == before


def test_single_file_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"gguf")
    assert model_id(f, "m") == f"m@sha256:{_leaf('m.gguf', b'gguf').hex()}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelIdError):
        model_id(tmp_path / "empty")
    with pytest.raises(ModelIdError):
        model_id(tmp_path / "absent")
    with pytest.raises(ModelIdError):
        model_id(f, "bad@name")
    with pytest.raises(ModelIdError):
        parse_model_id("x@sha256:zz")


def test_cli(model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["model", "hash", str(model), "--name", "tiny"])
    assert result.exit_code == 0
    assert result.output.strip() == "tiny" + model_id(model).removeprefix("tiny-model")
    result = runner.invoke(app, ["model", "hash", str(tmp_path / "absent")])
    assert result.exit_code == 1 and "Traceback" not in result.output


ROOT_A = "aa" * 32
ROOT_B = "bb" * 32


def test_model_name_of_ids_and_bare_names() -> None:
    assert mid.model_name(f"llama@sha256:{ROOT_A}") == "llama"
    assert mid.model_name("llama") == "llama"


def test_with_model_ids_replaces_the_entry_of_the_same_name() -> None:
    full = f"llama@sha256:{ROOT_A}"
    assert mid.with_model_ids(["llama", "other"], [full]) == [full, "other"]
    assert mid.with_model_ids([f"llama@sha256:{ROOT_B}"], [full]) == [full]
    assert mid.with_model_ids(["other"], [full]) == ["other", full]


def test_model_pins_accept_only_pinned_roots() -> None:
    pins = mid.ModelPins.parse(
        {"llama": f"llama@sha256:{ROOT_A}", "qwen": [ROOT_A, f"sha256:{ROOT_B}"]}
    )
    assert pins.roots == {"llama": {ROOT_A}, "qwen": {ROOT_A, ROOT_B}}
    assert pins.refusal(f"llama@sha256:{ROOT_A}") is None
    assert pins.refusal(f"qwen@sha256:{ROOT_B}") is None
    assert pins.refusal("unpinned") is None and pins.refusal(f"x@sha256:{ROOT_B}") is None
    assert pins.refusal(f"llama@sha256:{ROOT_B}") == (
        f"llama@sha256:{ROOT_B} is not a pinned root of llama"
    )
    assert pins.refusal("llama") == "llama is pinned but the worker claims no model root for it"


@pytest.mark.parametrize(
    "config",
    [
        {"llama": f"qwen@sha256:{ROOT_A}"},  # names another model
        {"llama": "abc"},  # not a root
        {"llama": []},  # pinned to nothing
        {"llama@sha256:x": ROOT_A},  # a key must be a bare name
    ],
)
def test_bad_pins_are_refused(config: dict[str, str | list[str]]) -> None:
    with pytest.raises(ModelIdError):
        mid.ModelPins.parse(config)


def test_worker_model_file_claims_the_full_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cocoon.roles
    from cocoon.config import WorkerConfig

    model_dir = tmp_path / "snapshot"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"w" * 100)
    seen: list[WorkerConfig] = []

    async def fake_run_worker(config: WorkerConfig, ready_file: object = None) -> None:
        seen.append(config)

    monkeypatch.setattr(cocoon.roles, "run_worker", fake_run_worker)
    expected = model_id(model_dir, "llama")
    result = CliRunner().invoke(
        app, ["worker", "--model", "llama", "--model", "m2", "--model-file", f"llama={model_dir}"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].models == [expected, "m2"]
    result = CliRunner().invoke(app, ["worker", "--model-file", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "--model-file" in result.output
