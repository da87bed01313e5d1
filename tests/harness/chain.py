"""What tests of the local chain need: Node and the contracts' npm packages."""

from __future__ import annotations

import shutil

import pytest

from cocoon.chain.local import contracts_dir

CONTRACTS = contracts_dir()
HAVE_NODE = shutil.which("node") is not None
HAVE_MODULES = (CONTRACTS / "node_modules" / "@ton" / "sandbox").is_dir()

# pytestmark of every module that starts a local chain.
NEEDS_LOCAL_CHAIN = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (HAVE_NODE and HAVE_MODULES),
        reason="the local chain needs Node and contracts/node_modules "
        "(run ./scripts/test or `npm ci --prefix contracts`)",
    ),
]
