"""Reading a file a user names for offline checks (`cocoon verify`, `cocoon attest
verify`), within a bound: such a file is a few kilobytes to a few megabytes, and
a path to a device or a huge file must be one line of refusal, not a process
that reads until memory runs out."""

from __future__ import annotations

import errno
from pathlib import Path

# An evidence bundle with its collateral is well under a megabyte; a quote or an
# SNP report with its certificates a few kilobytes.
MAX_EVIDENCE_FILE_BYTES = 16 << 20


def read_bounded(path: Path, limit: int = MAX_EVIDENCE_FILE_BYTES) -> bytes:
    """The file's bytes; OSError (EFBIG) past `limit`, as for any unreadable file."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data
