"""The web app in a real browser against a real `cocoon up` (with payments): Debian's
Chromium driven by Playwright, as a person would use the page.

A prompt streams in; "what ran where" names the worker the gateway's
`x-cocoon-worker` header named (and, on a mixed network, its kind of TEE); the
evidence bundle downloaded from the page passes `cocoon verify` and, tampered
with, fails with its reason; the wallet
chart grows with each paid answer; the explorer lists the verified workers; the
page fits a phone and is driven from the keyboard.

With COCOON_WEB_SCREENSHOTS=DIR the pages are also saved there (how the images
in docs/images/ were made).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import UpProcess, get_json, start_up, stop_up, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.environ.get("COCOON_WEB_SCREENSHOTS", "")
# Functions, not expressions: the page's CSP forbids eval, which Playwright uses for those.
MODELS_LOADED = "() => document.querySelectorAll('#model option').length > 0"

if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs it (scripts/bootstrap)
    pytest.skip(
        "the browser tests need Debian's chromium at /usr/bin/chromium: apt-get install chromium",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    # A paced synthetic engine (~1 s an answer): text arrives while the page streams it.
    process = start_up(tmp_path_factory.mktemp("web"), "--payments", "--tokens-per-second", "60")
    try:
        yield process
    finally:
        stop_up(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page: object, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)  # type: ignore[attr-defined]


def _ask(page: object, text: str, max_tokens: int = 40) -> tuple[str, object]:
    """Send `text` from the page; the answer's list item and the response's headers."""
    p: object = page
    p.fill("#max-tokens", str(max_tokens))  # type: ignore[attr-defined]
    p.fill("#prompt", text)  # type: ignore[attr-defined]
    before = p.locator("li.msg.assistant").count()  # type: ignore[attr-defined]
    with p.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as response:  # type: ignore[attr-defined]
        p.click("#send")  # type: ignore[attr-defined]
    answer = p.locator("li.msg.assistant").nth(before)  # type: ignore[attr-defined]
    return answer, response.value.headers


def _deposits(page: object) -> dict[str, tuple[int, int | None]]:
    """Each channel the client pays into: its deposit and when it closes (None: open)."""
    wallet = json.loads(page.evaluate("() => fetch('/v1/wallet').then(r => r.text())"))  # type: ignore[attr-defined]
    return {c["channel"]: (c["deposit_nano"], c["close_at"]) for c in wallet["channels"]}


def _cocoon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cocoon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_chat_what_ran_where_and_evidence(up: UpProcess, browser: object, tmp_path: Path) -> None:
    url = up.printed["web app"]
    assert url == up.base_url.removesuffix("/v1") + "/"
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function(MODELS_LOADED)
    assert page.input_value("#model") in up.models

    answer, headers = _ask(page, "What is confidential computing?", max_tokens=60)
    # Streamed: text is on the page while the answer is still coming.
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('li.msg.assistant')].pop();"
        " return a && a.getAttribute('aria-busy') === 'true'"
        " && a.querySelector('.text').textContent.length > 0 }"
    )
    page.wait_for_selector("li.msg.assistant[data-done]")
    text = answer.locator(".text").inner_text()
    assert len(text.split()) >= 30, text
    worker = headers["x-cocoon-worker"]
    request_id = headers["x-request-id"]
    assert answer.get_attribute("data-worker") == worker

    answer.locator("details.ran-where summary").click()
    panel = answer.locator(".ran-where-body")
    panel.wait_for()
    assert panel.locator(".worker-id").inner_text() == worker
    body = panel.inner_text()
    assert "simulated TDX (not hardware)" in body
    assert "signature valid" in body and "image listed" in body
    assert "TON" in body and request_id in body
    _shot(page, "web-playground.png")

    with page.expect_download() as download:
        panel.locator("[data-action=download-evidence]").click()
    bundle = tmp_path / download.value.suggested_filename
    download.value.save_as(bundle)
    assert bundle.name == f"cocoon-evidence-{request_id}.json"
    # Checked offline, as on another machine: exit 0 and the same worker.
    verified = _cocoon("verify", str(bundle), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    summary = json.loads(verified.stdout)
    assert summary["worker"] == worker and summary["request_id"] == request_id
    assert summary["simulated"] is True and summary["amount_nano"] > 0
    # Tampered (the price lowered by one nanoton): refused, with the reason in one line.
    doc = json.loads(bundle.read_text())
    doc["price"]["amount_nano"] -= 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    refused = _cocoon("verify", str(tampered))
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("cocoon: refused (price_mismatch):")
    assert refused.stderr.strip().count("\n") == 0
    assert not errors, errors

    # Opened from the bot's /receipt button as a Mini App: `?answer=ID`, Telegram's
    # initData in the fragment. The page shows that answer and sends the initData on.
    init_data = "query_id=AAH&user=%7B%22id%22%3A42%7D&auth_date=1&hash=00"
    launch = f"{url}?answer={request_id}#tgWebAppData={quote(init_data)}&tgWebAppVersion=8.0"
    mini = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    with mini.expect_request(lambda r: "/v1/answers/" in r.url) as asked:
        mini.goto(launch)
    assert asked.value.headers["x-telegram-init-data"] == init_data
    shown = mini.locator(f"li[data-request-id='{request_id}'] .ran-where-body")
    shown.wait_for()
    assert shown.locator(".worker-id").inner_text() == worker
    assert mini.evaluate("() => location.hash") == "#playground"


def test_stop_keyboard_and_embeddings(up: UpProcess, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.goto(up.printed["web app"])
    page.wait_for_function(MODELS_LOADED)
    # Keyboard only: Ctrl+Enter in the prompt sends; the stop button cuts the answer.
    page.fill("#max-tokens", "2000")
    page.focus("#prompt")
    page.keyboard.type("Write a long story.")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "() => { const a = document.querySelector('li.msg.assistant');"
        " return a && a.querySelector('.text').textContent.length > 0 }"
    )
    page.click("#stop")
    page.wait_for_selector("li.msg.assistant[data-done]")
    item = page.locator("li.msg.assistant").first
    assert "stopped" in item.locator(".who").inner_text()
    assert len(item.locator(".text").inner_text().split()) < 2000
    assert page.is_enabled("#send") and page.is_disabled("#stop")

    page.click("#embeddings summary")
    page.click("#embed-form button[type=submit]")
    result = page.locator("#embed-result")
    result.locator("p").first.wait_for()
    assert "dimensions" in result.inner_text(), result.inner_text()


def test_wallet_chart_grows_and_explorer(up: UpProcess, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    base = up.printed["web app"]
    page.goto(base + "#wallet")
    page.wait_for_selector("#chart-time svg")
    points = int(page.get_attribute("#chart-time svg", "data-points") or 0)

    page.goto(base + "#playground")
    page.wait_for_function(MODELS_LOADED)
    for question in ("One?", "Two?"):
        answer, _ = _ask(page, question, max_tokens=8)
        answer.locator("xpath=self::*[@data-done]").wait_for()

    page.goto(base + "#wallet")
    # The page refreshes itself: the chart shows the two new paid answers.
    page.wait_for_function(
        f"() => Number(document.querySelector('#chart-time svg')?.dataset.points) >= {points + 2}"
    )
    assert "synthetic-small" in page.get_attribute("#chart-models svg", "aria-label")
    assert page.locator(".wallet-actions").is_visible()
    _shot(page, "web-wallet.png")

    # A page of another origin cannot post a form here: wallet actions take JSON only.
    status = page.evaluate(
        "() => fetch('/v1/wallet/close', {method: 'POST', body: '{}'}).then(r => r.status)"
    )
    assert status == 415
    # Top-up from the page: the channel in use holds half a TON more, on chain.
    before = _deposits(page)
    page.fill("#top-up-amount", "0.5")
    page.click("#top-up-form button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Topped up 0.5 TON')"
    )
    after = _deposits(page)
    grown = [c for c in after if after[c][0] == before[c][0] + 500_000_000]
    assert len(grown) == 1 and all(after[c][0] == before[c][0] for c in after if c not in grown)
    # Close, confirmed in the dialog: a channel is closing on chain.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#close-channel")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('is closing')"
    )
    assert [c for c, (_, close_at) in _deposits(page).items() if close_at]

    page.goto(base + "#explorer")
    page.wait_for_selector("#explorer h2")
    workers = json.loads(page.evaluate("fetch('/v1/attestation').then(r => r.text())"))["workers"]
    text = page.locator("#explorer").inner_text()
    assert workers and all(w["key_id"] in text for w in workers)
    assert "Root contract" in text and "Allowed worker images" in text
    _shot(page, "web-explorer.png")


def test_phone_width(up: UpProcess, browser: object) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page.goto(up.printed["web app"])
    page.wait_for_function(MODELS_LOADED)
    for tab in ("#playground", "#explorer", "#wallet"):
        page.goto(up.printed["web app"] + tab)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, f"{tab} is {width} px wide on a 390 px screen"
    page.goto(up.printed["web app"] + "#playground")
    _shot(page, "web-phone.png")


KIND_LABELS = {
    "sim-tdx": "simulated TDX (not hardware)",
    "sim-snp": "simulated SEV-SNP (not hardware)",
}


def test_mixed_network_names_each_kind(browser: object, tmp_path: Path) -> None:
    """`--tee sim-tdx,sim-snp`: each answer's panel names the kind of the worker the
    `x-cocoon-worker` header named, with SNP's launch measurement and TCB; an SNP
    answer's bundle, downloaded from the page, passes `cocoon verify`."""
    up = start_up(tmp_path / "up", "--tee", "sim-tdx,sim-snp", "--workers", "2")
    try:
        workers = wait_for(
            lambda: (w := get_json(f"{up.base_url}/attestation")["workers"]) and len(w) == 2 and w,
            timeout=30,
        )
        by_key = {w["key_id"]: w for w in workers}
        assert {w["provider"] for w in workers} == set(KIND_LABELS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(up.printed["web app"])
        page.wait_for_function(MODELS_LOADED)
        seen: dict[str, str] = {}  # provider -> request id
        # The proxy picks one of the two by load, at random among equals: a few short
        # answers reach both (each kind has at least a quarter of the picks).
        for i in range(40):
            answer, headers = _ask(page, f"Question {i}?", max_tokens=2)
            answer.locator("xpath=self::*[@data-done]").wait_for()
            worker = by_key[headers["x-cocoon-worker"]]
            if worker["provider"] in seen:
                continue
            seen[worker["provider"]] = headers["x-request-id"]
            answer.locator("details.ran-where summary").click()
            panel = answer.locator(".ran-where-body")
            panel.wait_for()
            assert panel.locator(".worker-id").inner_text() == worker["key_id"]
            assert panel.locator(".tee-kind").inner_text() == KIND_LABELS[worker["provider"]]
            assert panel.get_attribute("data-tee") == worker["tee"]
            measurements = worker["measurements"]
            if worker["provider"] == "sim-snp":
                shown = panel.locator(".launch-measurement").inner_text()
                assert shown == measurements["measurement"]
                assert panel.locator(".snp-tcb").inner_text() == (
                    "bootloader 4, tee 0, snp 22, microcode 213"
                )
                assert "Milan" in panel.inner_text()
                with page.expect_download() as download:
                    panel.locator("[data-action=download-evidence]").click()
                bundle = tmp_path / download.value.suggested_filename
                download.value.save_as(bundle)
            else:
                assert panel.locator(".launch-measurement").count() == 0
                assert "MRTD" in panel.inner_text()
            if len(seen) == 2:
                break
        assert set(seen) == set(KIND_LABELS), f"40 answers all from {set(seen)}"

        verified = _cocoon("verify", str(bundle), "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        summary = json.loads(verified.stdout)
        assert summary["request_id"] == seen["sim-snp"]
        assert summary["provider"] == "sim-snp" and summary["tee"] == "sev-snp"
        assert summary["simulated"] is True and summary["product"] == "Milan"
        snp = next(w for w in workers if w["provider"] == "sim-snp")
        assert summary["launch_measurement"] == snp["measurements"]["measurement"]
        text = _cocoon("verify", str(bundle))
        assert text.returncode == 0 and "SIMULATED SEV-SNP Milan (not hardware)" in text.stdout
        refused = _cocoon("verify", str(bundle), "--require-hardware")
        assert refused.returncode == 1 and "refused (not_hardware)" in refused.stderr

        # The explorer lists both workers, each with its kind.
        page.goto(up.printed["web app"] + "#explorer")
        for worker in workers:
            cell = page.locator(f"#explorer [data-tee='{worker['tee']}']").first
            cell.wait_for()
            assert KIND_LABELS[worker["provider"]] in cell.inner_text()
        assert not errors, errors
    finally:
        assert stop_up(up) == 0
