"""`cocoon bot`: a Telegram bot answering through the local client gateway."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any

import typer


def _fail(message: str) -> None:
    typer.echo(f"cocoon: error: {message}", err=True)
    raise typer.Exit(1)


def bot(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML configuration file.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bot token from @BotFather (or COCOON_BOT_TOKEN).")
    ] = None,
    gateway: Annotated[
        str | None, typer.Option(help="The client gateway's OpenAI base URL.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="The gateway's bearer key.")] = None,
    allowed_user: Annotated[
        list[int] | None,
        typer.Option(help="A Telegram user id allowed to use the bot (repeatable; none: all)."),
    ] = None,
    web_url: Annotated[
        str | None, typer.Option(help="Public https URL of the web app (the Mini App).")
    ] = None,
    api_server: Annotated[
        str | None, typer.Option(help="Bot API server base URL (default: Telegram's).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model of new conversations.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run a Telegram bot that answers through the client gateway.

    Chats, /model, /receipt (with the web app as a Mini App), /new; text and PDF
    files summarised on this side before sealing.
    """
    from ..config import ConfigError, load

    try:
        from ..bot.app import BotRunner
        from ..bot.config import BotConfig
        from ..bot.errors import BotError
    except ImportError as exc:
        _fail(f"the bot needs the `bot` extra (pip install 'cocoon[bot]'): {exc}")
        return
    overrides: dict[str, Any] = {
        "token": token,
        "gateway": gateway,
        "api_key": api_key,
        "allowed_users": allowed_user or None,
        "web_url": web_url,
        "api_server": api_server,
        "model": model,
    }
    try:
        cfg = load(BotConfig, config, overrides)
    except ConfigError as exc:
        _fail(str(exc))
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        runner = BotRunner(cfg)
    except BotError as exc:
        _fail(str(exc))
        return
    from ..roles import run

    # aiogram stops polling on SIGINT/SIGTERM itself; a second ^C lands here.
    with contextlib.suppress(KeyboardInterrupt):
        run(runner.run)
