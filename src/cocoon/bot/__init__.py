"""The Telegram side of Cocoon: `cocoon bot`, chats answered through the local
client gateway.

It needs the `bot` extra (aiogram, openai, pypdf) and is imported by `cocoon
bot` alone; the check of the Mini App's `initData`, which the gateway uses, is
`cocoon.telegram_initdata`.
"""
