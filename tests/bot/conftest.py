from harness.bot_world import world

__all__ = ["world"]
