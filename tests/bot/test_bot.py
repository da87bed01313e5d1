"""`cocoon bot` driven through the Bot API double against a real in-process
network: the real bot code, aiogram's real HTTP client, the real OpenAI SDK to
the real gateway, sealed requests to a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

from cocoon.bot.streaming import CURSOR
from harness.bot_world import ALICE, MALLORY, MODELS, WEB_URL, BotWorld, decode, minimal_pdf


def _answer_done(world: BotWorld, before: int) -> bool:
    """A new answer message exists and shows no cursor any more."""
    sent = world.chat()[before:]
    return bool(sent) and not sent[-1].text.endswith(CURSOR) and sent[-1].text != "…"


def last(world: BotWorld, user: int = ALICE) -> str:
    """The text of the bot's latest message to the user ("" before any)."""
    sent = world.chat(user)
    return sent[-1].text if sent else ""


async def ask(world: BotWorld, text: str, user: int = ALICE) -> str:
    before = len(world.chat(user))
    world.api.user_sends(user, text)
    await world.api.wait_for(lambda: _answer_done(world, before))
    return world.chat(user)[-1].text


async def test_a_question_is_answered_by_editing_one_message(world: BotWorld) -> None:
    question_id = world.api.user_sends(ALICE, "What is a TEE?")
    await world.api.wait_for(lambda: _answer_done(world, 0))
    (answer,) = world.chat()
    # The placeholder replied to the question, then grew by edits: every shown state
    # but the last is a prefix of the answer with the cursor after it.
    assert answer.reply_to == question_id
    assert answer.texts[0] == "…"
    assert answer.edits >= 3, answer.texts
    final = answer.text
    for shown in answer.texts[1:-1]:
        assert shown.endswith(CURSOR)
        assert final.startswith(shown.removesuffix(CURSOR))
    assert len(final.split()) >= 10
    assert world.api.called("sendChatAction")[0]["action"] == "typing"
    # The question reached the worker (sealed: only it saw the plaintext).
    assert world.prompts == ["What is a TEE?"]
    # The conversation goes on: the second question carries the first exchange.
    await ask(world, "And why does it matter?")
    assert world.prompts[1] == f"What is a TEE?\n{final}\nAnd why does it matter?"


async def test_a_server_without_chat_actions_still_gets_the_answer(world: BotWorld) -> None:
    # "typing…" is cosmetic: a Bot API server that lacks it must not cost the answer.
    world.api.missing.add("sendChatAction")
    answer = await ask(world, "What is a TEE?")
    assert len(answer.split()) >= 10
    assert not world.api.called("sendChatAction")


async def test_new_forgets_the_conversation(world: BotWorld) -> None:
    await ask(world, "first question")
    world.api.user_sends(ALICE, "/new")
    await world.api.wait_for(lambda: "forgotten" in last(world))
    await ask(world, "second question")
    assert world.prompts[-1] == "second question"


async def test_model_lists_and_chooses(world: BotWorld) -> None:
    world.api.user_sends(ALICE, "/model")
    await world.api.wait_for(lambda: last(world).startswith("Model:"))
    listing = world.chat()[-1]
    buttons = decode(listing.reply_markup)
    assert sorted(b["text"].removeprefix("✓ ") for b in buttons) == sorted(MODELS)
    large = next(b for b in buttons if b["text"].endswith("synthetic-large"))
    world.api.user_presses(ALICE, listing, large["callback_data"])
    await world.api.wait_for(lambda: listing.text == "Model: synthetic-large")
    (answered,) = world.api.called("answerCallbackQuery")
    assert answered["text"] == "Model: synthetic-large"
    await ask(world, "which model?")
    world.api.user_sends(ALICE, "/receipt")
    await world.api.wait_for(lambda: last(world).startswith("What ran where"))
    assert "Model: synthetic-large" in last(world)
    # By name, as an argument.
    world.api.user_sends(ALICE, "/model synthetic-small")
    await world.api.wait_for(lambda: last(world) == "Model: synthetic-small")
    world.api.user_sends(ALICE, "/model no-such-model")
    await world.api.wait_for(lambda: last(world).startswith("No model"))


async def test_receipt_names_the_worker_and_opens_the_mini_app(world: BotWorld) -> None:
    world.api.user_sends(ALICE, "/receipt")
    await world.api.wait_for(lambda: "No answer yet" in last(world))
    await ask(world, "Who answers?")
    world.api.user_sends(ALICE, "/receipt")
    await world.api.wait_for(lambda: last(world).startswith("What ran where"))
    receipt = world.chat()[-1]
    (worker,) = world.network.workers
    assert f"Worker: {worker.credentials.key_id}" in receipt.text
    # The button opens the web app as a Mini App, on the page of this very answer.
    (button,) = decode(receipt.reply_markup)
    url = button["web_app"]["url"]
    assert url.startswith(WEB_URL + "/?")
    (request_id,) = parse_qs(urlsplit(url).query)["answer"]
    assert f"Request: {request_id}" in receipt.text
    # The gateway knows that answer by that id, served by that worker.
    pool = world.network.pool
    assert pool is not None
    result = pool.results[request_id]
    assert result.worker is not None and result.worker.key_id == worker.credentials.key_id
    assert result.receipt is not None
    assert f"Model: {result.receipt.model}" in receipt.text
    tokens = f"Tokens: {result.receipt.prompt_tokens} prompt + "
    assert tokens + f"{result.receipt.completion_tokens} completion" in receipt.text
    assert "Receipt signature: valid" in receipt.text


async def test_a_text_document_is_summarised(world: BotWorld) -> None:
    notes = "Quarterly notes.\n\nRevenue grew by 12 percent.\nThe new office opens in May.\n"
    world.api.user_sends_document(ALICE, "notes.txt", "text/plain", notes.encode())
    await world.api.wait_for(lambda: _answer_done(world, 0))
    assert world.api.called("getFile")
    # The document's text was read on the client side and reached the worker inside
    # the sealed request, with the request for a summary.
    (prompt,) = world.prompts
    assert prompt.startswith("Summarise this document")
    assert "Revenue grew by 12 percent.\nThe new office opens in May." in prompt
    assert 'Document "notes.txt"' in prompt


async def test_a_pdf_document_is_summarised(world: BotWorld) -> None:
    pdf = minimal_pdf(["Confidential merger memo", "Target: Example Corp", "Price: 42 TON"])
    world.api.user_sends_document(
        ALICE, "memo.pdf", "application/pdf", pdf, caption="Give me the key points"
    )
    await world.api.wait_for(lambda: _answer_done(world, 0))
    (prompt,) = world.prompts
    assert prompt.startswith("Give me the key points")
    for line in ("Confidential merger memo", "Target: Example Corp", "Price: 42 TON"):
        assert line in prompt


async def test_an_unreadable_document_is_refused_in_one_line(world: BotWorld) -> None:
    world.api.user_sends_document(ALICE, "photo.png", "image/png", b"\x89PNG\r\n\x1a\n....")
    await world.api.wait_for(lambda: world.chat())
    assert last(world).startswith("⚠ photo.png is image/png")
    assert world.prompts == []


async def test_a_user_not_allowed_is_refused(world: BotWorld) -> None:
    world.api.user_sends(MALLORY, "hello")
    await world.api.wait_for(lambda: world.chat(MALLORY))
    (refusal,) = world.chat(MALLORY)
    assert "only the users it was set up for" in refusal.text
    assert str(MALLORY) in refusal.text
    assert world.prompts == []
    # Nor can they press buttons.
    world.api.user_sends(ALICE, "/model")
    await world.api.wait_for(lambda: last(world).startswith("Model:"))
    listing = world.chat()[-1]
    world.api.user_presses(MALLORY, listing, decode(listing.reply_markup)[-1]["callback_data"])
    await world.api.wait_for(lambda: world.api.called("answerCallbackQuery"))
    assert world.api.called("answerCallbackQuery")[0]["show_alert"] == "true"
    assert listing.edits == 0


async def test_help_and_start(world: BotWorld) -> None:
    world.api.user_sends(ALICE, "/start")
    await world.api.wait_for(lambda: world.chat())
    for command in ("/model", "/receipt", "/new"):
        assert command in last(world)


def test_without_a_token_cocoon_bot_says_so_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCOON_BOT_")}
    done = subprocess.run(
        [sys.executable, "-m", "cocoon.cli", "bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cocoon: error: no bot token")
    assert "COCOON_BOT_TOKEN" in lines[0]
