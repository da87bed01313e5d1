"""What `cocoon up` is asked to start: the options of a whole local network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class UpOptions:
    port: int = 8080
    host: str = "127.0.0.1"
    workers: int = 2
    data_dir: Path = Path(".cocoon")
    upstream: str | None = None
    model: str | None = None
    upstream_api_key: str | None = None
    tokens_per_second: float = 0.0
    first_token_delay_ms: float = 0.0
    network: str = "cocoon-local"
    api_keys: list[str] = field(default_factory=list)
    verbose: bool = False
    # "sim-tdx" (simulated TDX quotes, verified by the real DCAP code, this build's
    # image listed on the local root), "sim-snp" (simulated SEV-SNP reports), a mix
    # that proxies and workers take in turn ("sim-tdx,sim-snp"), or "none" (no
    # attestation, marked untrusted).
    tee: str = "sim-tdx"
    # Proxies, each registered on the local root; clients fail over between them.
    proxies: int = 2
    # What the workers run without --upstream: "llama" (the built-in engine,
    # plus the embeddings model where installed) or "synthetic".
    engine: str = "llama"
    # A GGUF file for the llama engine (None: its bundled default model).
    model_file: str | None = None
    # Serve the built-in embeddings model beside the llama engine.
    embeddings: bool = True
    # Payment channels on a local chain (needs Node and the contracts' npm packages;
    # without them `up` starts without payments and says why).
    payments: bool = True
    # The last `dishonest` workers fake `lie_rate` of their answers (worker [lying]).
    dishonest: int = 0
    lie_rate: float = 0.5
    # The root's dispute window for slashes by verdict (seconds).
    dispute_delay: int = 60
