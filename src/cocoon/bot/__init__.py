"""The Telegram side of Cocoon: `cocoon bot` (chats answered through the local
client gateway), and the check of the mini-app's Telegram `initData`.

Only `webapp_auth` is imported by the gateway; the rest needs the `bot` extra
(aiogram, openai, pypdf) and is imported by `cocoon bot` alone.
"""
