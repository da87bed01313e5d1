"""The web app's files, read once from the package (no network, no build step)."""

from __future__ import annotations

from importlib.resources import files

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of `static/` by name → (content, content type)."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in files("cocoon.web").joinpath("static").iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and suffix in _TYPES:
            out[name] = (entry.read_bytes(), _TYPES[suffix])
    return out
