"""The client role: an OpenAI-compatible gateway that seals requests end to end."""
