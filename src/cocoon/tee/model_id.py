"""Model identities: ``name@sha256:<merkle root>`` over the files of a model.

The Merkle construction (version 1), fixed here because workers claim the
root they loaded and clients pin it, so every implementation must agree:

1. The files are the regular files under the model directory, found
   recursively (symbolic links to files are followed, as in a Hugging Face
   snapshot whose files link into ``blobs/``; links to directories are not),
   named by their path relative to that directory with ``/`` separators.
   A single file is a model of one file named by its base name.
2. They are sorted by the UTF-8 bytes of that relative path.
3. Each file gives a leaf::

       leaf = SHA-256(0x00 ‖ u32be(len(path)) ‖ path ‖ u64be(size) ‖ SHA-256(content))

   The content is read in 1 MiB chunks, so a model of any size is hashed in
   constant memory.
4. Leaves are combined pairwise, left to right, level by level::

       node = SHA-256(0x01 ‖ left ‖ right)

   and an odd node at the end of a level is carried up unchanged (never
   paired with itself, so two different file lists cannot share a root).
   The 0x00/0x01 prefixes keep a leaf from ever being read as a node.
5. The root of a model with no files is an error, not a hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
MODEL_ID_RE = re.compile(r"^(?P<name>[^@\s]+)@sha256:(?P<root>[0-9a-f]{64})$")


class ModelIdError(ValueError):
    """A model path cannot be hashed, or a model id does not parse."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model as it enters the tree."""

    path: str
    size: int
    sha256: bytes

    def leaf(self) -> bytes:
        encoded = self.path.encode("utf-8")
        return hashlib.sha256(
            b"\x00"
            + struct.pack(">I", len(encoded))
            + encoded
            + struct.pack(">Q", self.size)
            + self.sha256
        ).digest()


def _file_digest(path: Path) -> tuple[int, bytes]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.digest()


def model_files(path: Path) -> list[ModelFile]:
    """The files of the model at ``path``, sorted, each with its size and content hash."""
    path = Path(path)
    if path.is_file():
        entries = [(path.name, path)]
    elif path.is_dir():
        entries = []
        for root, _dirs, names in os.walk(path):
            for name in names:
                full = Path(root) / name
                if full.is_file():  # follows links to files; skips sockets, dangling links
                    entries.append((full.relative_to(path).as_posix(), full))
    else:
        raise ModelIdError(f"{path} is neither a file nor a directory")
    entries.sort(key=lambda item: item[0].encode("utf-8"))
    files = []
    for rel, full in entries:
        try:
            size, digest = _file_digest(full)
        except OSError as exc:
            raise ModelIdError(f"cannot read {full}: {exc.strerror}") from None
        files.append(ModelFile(rel, size, digest))
    return files


def merkle_root(files: list[ModelFile]) -> bytes:
    """The root over ``files`` (already in order) as described in the module doc."""
    if not files:
        raise ModelIdError("a model with no files has no identity")
    level = [f.leaf() for f in files]
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def model_id(path: Path, name: str | None = None) -> str:
    """``name@sha256:<root>`` of the model at ``path``; the name defaults to its base name."""
    path = Path(path)
    name = name if name is not None else path.resolve().name
    if not name or "@" in name or any(c.isspace() for c in name):
        raise ModelIdError(f"model name {name!r} must be non-empty, without '@' or spaces")
    return f"{name}@sha256:{merkle_root(model_files(path)).hex()}"


def cached_model_id(path: Path, name: str | None, cache_file: Path | None) -> str:
    """`model_id`, remembered in `cache_file` while the files' names, sizes and mtimes stay.

    Hashing a model reads every byte of it; a worker restarts far more often
    than its model changes. The cache is only a shortcut for the worker's own
    files (its data directory is as trusted as the model directory), and any
    change to a file's size or modification time, or a file added or
    removed, hashes the model again.
    """
    if cache_file is None:
        return model_id(path, name)
    key = str(Path(path).resolve())
    signature = _stat_signature(Path(path))
    try:
        cache = json.loads(Path(cache_file).read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("signature") == signature:
        cached = entry.get("id")
        if isinstance(cached, str) and MODEL_ID_RE.match(cached):
            cached_name, _root = parse_model_id(cached)
            if name is None or cached_name == name:
                return cached
    full = model_id(path, name)
    cache[key] = {"signature": signature, "id": full}
    try:
        tmp = Path(cache_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only data dir only costs the next start another hash
    return full


def _stat_signature(path: Path) -> list[list[object]]:
    """[relative path, size, mtime_ns] of every file of a model, sorted."""
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    rows: list[list[object]] = []
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = Path(root) / name
            if full.is_file():
                stat = full.stat()
                rows.append([full.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns])
    rows.sort(key=lambda row: str(row[0]).encode("utf-8"))
    return rows


def parse_model_id(text: str) -> tuple[str, str]:
    """(name, root hex) of a model id; raise ModelIdError."""
    match = MODEL_ID_RE.match(text)
    if match is None:
        raise ModelIdError(f"{text!r} is not name@sha256:<64 hex digits>")
    return match["name"], match["root"]


def model_name(model: str) -> str:
    """The name part of a model id, or ``model`` itself when it has no root."""
    match = MODEL_ID_RE.match(model)
    return match["name"] if match is not None else model


def with_model_ids(models: list[str], ids: list[str]) -> list[str]:
    """``models`` with each of ``ids`` replacing the entry of the same name, else added.

    How a worker turns ``models = ["llama"]`` and a hashed model directory
    into the full id it announces and claims (``llama@sha256:<root>``).
    """
    out = list(models)
    for full in ids:
        name, _root = parse_model_id(full)
        same = [i for i, m in enumerate(out) if model_name(m) == name]
        if same:
            out[same[0]] = full
            out = [m for i, m in enumerate(out) if i not in same[1:]]
        else:
            out.append(full)
    return out


_ROOT_RE = re.compile(r"^(?:sha256:)?(?P<root>[0-9a-f]{64})$")


class ModelPins:
    """Client policy: for pinned model names, the Merkle roots a worker may claim.

    Built from configuration ``{name: pin}`` where a pin is a full id
    ``name@sha256:<root>`` (what ``cocoon model hash`` prints) or a root
    (``<64 hex>`` or ``sha256:<64 hex>``), or a list of those. A model whose
    name is pinned is accepted only as ``name@sha256:<allowed root>``; a bare
    name or another root is refused. Names that are not pinned pass as they are.
    """

    def __init__(self, roots: dict[str, frozenset[str]] | None = None) -> None:
        self.roots = dict(roots or {})

    @classmethod
    def parse(cls, config: Mapping[str, str | Sequence[str]]) -> ModelPins:
        """Pins from configuration; raise ModelIdError naming the bad entry."""
        roots: dict[str, frozenset[str]] = {}
        for name, pins in config.items():
            if not name or "@" in name or any(c.isspace() for c in name):
                raise ModelIdError(f"pinned model name {name!r} must be a bare model name")
            allowed = set()
            for pin in [pins] if isinstance(pins, str) else list(pins):
                if "@" in pin:
                    pinned_name, root = parse_model_id(pin)
                    if pinned_name != name:
                        raise ModelIdError(f"pin {pin!r} for model {name!r} names another model")
                else:
                    match = _ROOT_RE.match(pin)
                    if match is None:
                        raise ModelIdError(
                            f"pin {pin!r} for model {name!r} is neither name@sha256:<root> "
                            "nor a 64-hex root"
                        )
                    root = match["root"]
                allowed.add(root)
            if not allowed:
                raise ModelIdError(f"model {name!r} is pinned to no root")
            roots[name] = frozenset(allowed)
        return cls(roots)

    def refusal(self, model: str) -> str | None:
        """Why ``model`` (as a worker claims it) is not acceptable, or None if it is."""
        match = MODEL_ID_RE.match(model)
        name = match["name"] if match is not None else model
        allowed = self.roots.get(name)
        if allowed is None:
            return None
        if match is None:
            return f"{name} is pinned but the worker claims no model root for it"
        if match["root"] not in allowed:
            return f"{model} is not a pinned root of {name}"
        return None
