from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from cocoon.config import ClientConfig, ConfigError, ProxyConfig, WorkerConfig, load, split_address


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        'proxy = "10.0.0.1:7400"\nmodels = ["a"]\ncoefficient_milli = 1500\n'
        "[synthetic]\ntokens_per_second = 50\n"
    )
    monkeypatch.setenv("COCOON_WORKER_COEFFICIENT_MILLI", "2000")
    monkeypatch.setenv("COCOON_WORKER_MODELS", "b, c")
    monkeypatch.setenv("COCOON_WORKER_TEE__ALLOW_UNTRUSTED", "true")
    config = load(WorkerConfig, path, {"proxy": "10.0.0.2:7400", "max_active_requests": None})
    assert config.proxy == "10.0.0.2:7400"  # flag beats file
    assert config.coefficient_milli == 2000  # environment beats file
    assert config.models == ["b", "c"]
    assert config.tee.allow_untrusted is True
    assert config.synthetic.tokens_per_second == 50  # untouched table kept
    assert config.max_active_requests == 64  # None flags mean "not given"


def test_mistakes_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text("[prices]\nbase_nano_per_tokn = 5\n")
    with pytest.raises(ConfigError, match="base_nano_per_tokn"):
        load(ProxyConfig, path)
    path.write_text('listen = ["not", "a", "string"]\n')
    with pytest.raises(ConfigError, match="listen"):
        load(ProxyConfig, path)
    path.write_text("this is not toml = = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(ProxyConfig, path)
    with pytest.raises(ConfigError, match="cannot read"):
        load(ClientConfig, tmp_path / "missing.toml")


def test_negative_prices_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text("[prices]\nbase_nano_per_token = -5\n")
    with pytest.raises(ConfigError, match="negative"):
        load(ProxyConfig, path)


def test_split_address() -> None:
    assert split_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ConfigError):
        split_address("no-port")


@pytest.mark.parametrize(
    ("name", "cls"), [("proxy", ProxyConfig), ("worker", WorkerConfig), ("client", ClientConfig)]
)
def test_documented_examples_load_to_the_defaults(name: str, cls: type) -> None:
    # docs/examples/*.toml list every field with its default: keep them true.
    path = Path(__file__).parents[2] / "docs" / "examples" / f"{name}.toml"
    assert load(cls, path) == cls()
    assert _keys(tomllib.loads(path.read_text())) == _fields(cls)


def _keys(table: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def _fields(cls: type, prefix: str = "") -> set[str]:
    names = set()
    for field in msgspec.structs.fields(cls):
        if field.default is None:
            continue  # TOML has no null: such fields are documented as comments
        names.add(prefix + field.name)
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            names |= _fields(field.type, f"{prefix}{field.name}.")
    return names


def test_pinned_models_are_checked_when_loaded() -> None:
    root = "ab" * 32
    config = load(ClientConfig, None, {"pinned_models": {"llama": [root, f"llama@sha256:{root}"]}})
    assert config.pinned_models == {"llama": [root, f"llama@sha256:{root}"]}
    with pytest.raises(ConfigError, match="names another model"):
        load(ClientConfig, None, {"pinned_models": {"llama": f"qwen@sha256:{root}"}})


def test_tdx_settings_default_to_the_kernel_path_and_no_gpu() -> None:
    tee = load(WorkerConfig).tee
    assert tee.tsm_path == "/sys/kernel/config/tsm/report" and tee.gpu_evidence == ""
