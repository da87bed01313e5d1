"""`cocoon up`: a whole local network in one process tree.

A proxy, workers and the client gateway, each in a child process of its own
(so they use all cores and fail independently, as they would on separate
machines). Children log to files; the terminal shows where to point an
OpenAI SDK. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
import time
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
from .up_engines import choose_engine, served_models
from .up_options import UpOptions
from .up_tee import build_images, node_tee, tee_environment, tee_kinds


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
