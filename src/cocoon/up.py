"""`cocoon up`: a whole local network in one process tree.

A proxy, workers and the client gateway, each in a child process of its own
(so they use all cores and fail independently, as they would on separate
machines). Children log to files; the terminal shows where to point an
OpenAI SDK. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .children import (
    READY_TIMEOUT_S,
    Child,
    Supervisor,
    UpError,
    check_port_free,
    node_role,
    proxy_ports,
    spawn_node,
    start_chain,
    stop_network,
    wait_ready,
)
from .localnet import Governing, start_governed


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


def engine_problem(options: UpOptions) -> str | None:
    """Why the llama engine cannot run here, or None if it can.

    Checked without importing the engine (the workers do that), so that `up`
    can say in one line why it falls back to the synthetic backend.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        # scripts/bootstrap leaves this marker in the venv when the install failed.
        if (Path(sys.prefix) / ".cocoon-engines-failed").exists():
            log = Path(sys.prefix) / "cocoon-engines-install.log"
            return f"its install failed (see {log}; COCOON_REQUIRE_ENGINES=1 ./scripts/up retries)"
        return "llama-cpp-python is not installed (the `llama` extra; ./scripts/up installs it)"
    if options.model_file is not None:
        return None if Path(options.model_file).is_file() else f"{options.model_file} not found"
    from .worker.backends.base import BackendUnavailable
    from .worker.backends.llama import bundled_model_file

    try:
        bundled_model_file()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def embeddings_problem() -> str | None:
    """Why the built-in embeddings model cannot run here, or None if it can."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return "sentence-transformers is not installed (the `embeddings` extra)"
    from .worker.backends.base import BackendUnavailable
    from .worker.backends.embeddings import bundled_model_dir

    try:
        bundled_model_dir()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def choose_engine(options: UpOptions) -> tuple[UpOptions, list[str]]:
    """The options to start with, and a line for each fallback taken on the way."""
    if options.upstream or options.engine != "llama":
        return options, []
    problem = engine_problem(options)
    if problem is not None:
        fallback = replace(options, engine="synthetic", embeddings=False)
        return fallback, [f"the llama engine is not available: {problem}; using synthetic"]
    if options.embeddings:
        problem = embeddings_problem()
        if problem is not None:
            return replace(options, embeddings=False), [f"no embeddings model: {problem}"]
    return options, []


def served_models(options: UpOptions, data_dir: Path) -> list[str]:
    """The model ids the workers will serve (hashed here, cached where worker1 looks)."""
    if options.upstream or options.engine != "llama":
        return [options.model or "synthetic-small"]
    from .tee.model_id import cached_model_id
    from .worker.backends.llama import bundled_model_file, default_model_name

    cache = data_dir / "worker1" / "model-ids.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    path = Path(options.model_file) if options.model_file else bundled_model_file()
    models = [cached_model_id(path, default_model_name(path), cache)]
    if options.embeddings:
        from .worker.backends.embeddings import DEFAULT_MODEL_NAME, bundled_model_dir

        models.append(cached_model_id(bundled_model_dir(), DEFAULT_MODEL_NAME, cache))
    return models


def compile_package() -> None:
    """Bytecode for the package, written once here instead of compiled by every node.

    Each node is a new Python process importing about 125 modules of this package
    from source (an editable install). Where bytecode may not be written
    (PYTHONDONTWRITEBYTECODE) every node compiled them all at every start: 0.6 s
    of imports per node instead of 0.38 s, on each of the 5 nodes of `cocoon up`
    (2 cores). `compileall` writes bytecode regardless, and skips what is current.
    """
    import compileall

    compileall.compile_dir(Path(__file__).parent, quiet=1)


def start_network(options: UpOptions) -> list[Child]:
    """Start the chain (with payments), the proxies, workers and client; return them once
    all are ready (in that order: chain, proxies, workers, client)."""
    if options.port:
        check_port_free(options.host, options.port)
    compile_package()
    data_dir = options.data_dir.resolve()
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    common = ["--network", options.network, "--allow-untrusted"]
    env: dict[str, str] = {}
    if options.tee != "none":
        common = ["--network", options.network, "--require-attestation"]
        env = tee_environment(options.tee)
    children: list[Child] = []
    proxy_names = [f"proxy{i + 1}" for i in range(options.proxies)]
    worker_names = [f"worker{i + 1}" for i in range(options.workers)]
    nodes = [*proxy_names, *worker_names, "client"]
    pay_env: dict[str, dict[str, str]] = {name: {} for name in nodes}
    ports = proxy_ports(options.host, run_dir, options.proxies)
    endpoints = {
        name: f"{options.host}:{port}" for name, port in zip(proxy_names, ports, strict=True)
    }
    governed = False
    governing: Governing | None = None
    try:
        if options.payments:
            from .chain.local import LocalChainError

            try:
                chain = start_chain(data_dir / "chain", run_dir)
            except LocalChainError as exc:
                print(f"cocoon: starting without payments: {exc}", file=sys.stderr)
            else:
                children.append(chain)
                endpoint = str(chain.info["endpoint"])
                images = [] if options.tee == "none" else build_images(options.tee)
                root, pay_env, governing = start_governed(
                    endpoint,
                    data_dir,
                    nodes,
                    images=images,
                    models=served_models(options, data_dir),
                    proxy_endpoints=endpoints,
                    dispute_delay=options.dispute_delay,
                )
                governed = True
                # Where `cocoon root` and `cocoon stake` find this network while it runs.
                (run_dir / "root.json").write_text(
                    json.dumps(
                        {
                            "root": root,
                            "endpoint": endpoint,
                            "owner_key": str(data_dir / "owner.key"),
                        }
                    )
                )
                # The root is the source of truth for images: no local pin beside it.
                env = {k: v for k, v in env.items() if not k.endswith("_TEE__IMAGE_HASHES")}
        proxies: list[Child] = []
        for name in proxy_names:
            proxy = spawn_node(
                name,
                [
                    "proxy",
                    *common,
                    "--listen",
                    endpoints[name],
                    "--http",
                    f"{options.host}:0",
                    "--data-dir",
                    str(data_dir / name),
                ],
                run_dir,
                options.verbose,
                {**env, **pay_env[name], **node_tee(options.tee, "PROXY", len(proxies))},
            )
            proxies.append(proxy)
        children.extend(proxies)
        # Workers and the client start beside the proxies, not after them: their
        # ports are chosen already, and they dial until the proxies listen.
        # Governed: everyone takes the proxies from the root; else the fixed list.
        wanted = ["--proxies", "root"] if governed else []
        if not governed:
            for name in proxy_names:
                wanted += ["--proxies", endpoints[name]]
        workers: list[Child] = []
        for name in worker_names:
            args = [
                "worker",
                *common,
                *wanted,
                "--http",
                f"{options.host}:0",
                "--data-dir",
                str(data_dir / name),
            ]
            args += _backend_args(options)
            lying = (
                {"COCOON_WORKER_LYING__LIE_RATE": str(options.lie_rate)}
                if name in worker_names[len(worker_names) - options.dishonest :]
                and options.dishonest
                else {}
            )
            workers.append(
                spawn_node(
                    name,
                    args,
                    run_dir,
                    options.verbose,
                    {
                        **env,
                        **pay_env[name],
                        **lying,
                        **node_tee(options.tee, "WORKER", len(workers)),
                    },
                )
            )
        children.extend(workers)
        client_args = [
            "client",
            *common,
            *wanted,
            "--listen",
            f"{options.host}:{options.port}",
            "--data-dir",
            str(data_dir / "client"),
        ]
        for key in options.api_keys:
            client_args += ["--api-key", key]
        client = spawn_node(
            "client", client_args, run_dir, options.verbose, {**env, **pay_env["client"]}
        )
        children.append(client)
        if governing is not None:
            try:
                governing.join(READY_TIMEOUT_S)
            except Exception as exc:  # the chain's errors, in one line
                raise UpError(f"setting up the local root failed: {exc}") from exc
        wait_ready([*proxies, *workers, client], READY_TIMEOUT_S)
    except BaseException:
        stop_network(children)
        raise
    return children


def _backend_args(options: UpOptions) -> list[str]:
    args: list[str] = []
    if options.upstream:
        args += ["--backend", "openai", "--upstream", options.upstream]
        if options.upstream_api_key:
            args += ["--upstream-api-key", options.upstream_api_key]
    elif options.engine == "llama":
        args += ["--backend", "llama"]
        if options.model_file:
            args += ["--model-file", options.model_file]
        if options.embeddings:
            args += ["--embeddings", "sentence-transformers"]
    else:
        args += [
            "--tokens-per-second",
            str(options.tokens_per_second),
            "--first-token-delay-ms",
            str(options.first_token_delay_ms),
        ]
    if options.model and (options.upstream or options.engine != "llama"):
        args += ["--model", options.model]
    return args


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


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def run_up(options: UpOptions) -> int:
    """The `cocoon up` command: start, print where to connect, wait for Ctrl-C."""
    started = time.monotonic()
    options, fallbacks = choose_engine(options)
    for line in fallbacks:
        print(f"cocoon: {line}", file=sys.stderr)
    engine = "" if options.upstream else f" on the {options.engine} engine"
    print(
        f"cocoon: starting a local network ({options.proxies} proxies, {options.workers} workers,"
        f" client){engine}...",
        file=sys.stderr,
    )
    children = start_network(options)
    # From here on Ctrl-C means "stop in order" (before, it aborts the start,
    # and start_network stops what it started). Installed before anything is
    # printed, so whoever reacts to our output can already stop us cleanly.
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    chain = children[0] if children[0].name == "chain" else None
    nodes = children[1:] if chain is not None else children
    proxies = [c for c in nodes if node_role(c.name) == "proxy"]
    workers = [c for c in nodes if node_role(c.name) == "worker"]
    client = nodes[-1]
    models = sorted({str(m) for c in workers for m in _list(c.info.get("models"))})
    base_url = str(client.info["base_url"])
    print(f"OpenAI base URL: {base_url}")
    # The web app (playground, what ran where, explorer, wallet) on the same gateway.
    print(f"web app: {base_url.removesuffix('/v1')}/")
    print(f"models: {', '.join(models)}")
    print(
        f"proxy status: {proxies[0].info['http']}/ · logs: {children[0].log_file.parent}"
        f" · ready in {time.monotonic() - started:.1f} s",
    )
    for proxy in proxies:
        print(
            f"{proxy.name}: {proxy.info['listen']} · pid {proxy.process.pid}"
            f" · status {proxy.info['http']}/"
        )
    liars = (
        {w.name for w in workers[len(workers) - options.dishonest :]}
        if options.dishonest
        else set()
    )
    for worker in workers:
        lies = (
            f" · DISHONEST: fakes {options.lie_rate:.0%} of answers" if worker.name in liars else ""
        )
        print(
            f"{worker.name}: pid {worker.process.pid} · stats {worker.info['http']}/jsonstats{lies}"
        )
    if chain is not None:
        root_file = children[0].log_file.parent / "root.json"
        root = json.loads(root_file.read_text())["root"] if root_file.exists() else "?"
        print(
            f"payments: local chain {chain.info['endpoint']} · root {root} · `cocoon wallet`,"
            " `cocoon stake show` and `cocoon root show` inspect it",
            file=sys.stderr,
        )
    if options.tee == "none":
        print(
            "warning: running without hardware attestation (tee provider none): every node is"
            " marked untrusted",
            file=sys.stderr,
        )
    else:
        pki = {"sim-tdx": "Intel PKI; real DCAP", "sim-snp": "AMD PKI; real SEV-SNP"}
        kinds = " and ".join(pki[k] for k in tee_kinds(options.tee))
        print(
            f"attestation: {options.tee} (simulated {kinds} verification,"
            " trusted only inside this network)",
            file=sys.stderr,
        )
    print("Ctrl-C to stop.", flush=True)
    code = 0
    # A node that dies is restarted with backoff while the others serve on; one that
    # keeps dying, or the chain, ends the network with the reason (children.py).
    supervisor = Supervisor(children)
    try:
        while not stopping:
            reason = supervisor.poll(time.monotonic())
            if reason is not None:
                print(f"cocoon: {reason}", file=sys.stderr)
                stopping = True
                code = 1
            time.sleep(0.2)
    finally:
        print("cocoon: stopping...", file=sys.stderr)
        stop_network(supervisor.children)
    return code
