"""The ``tdx`` provider: real TDX quotes from Linux configfs-tsm inside a TDX guest.

The kernel ABI (Documentation/ABI/testing/configfs-tsm) is a directory per
report request under ``/sys/kernel/config/tsm/report/``:

- ``mkdir report/$name`` creates a request; ``rmdir`` removes it;
- ``provider`` (read): who produces the quote, ``tdx_guest`` in a TDX guest;
- ``inblob`` (write): up to 64 bytes of report data (we always write 64);
- ``outblob`` (read): the quote for the current ``inblob``, made on read;
- ``generation`` (read): incremented on every write to ``inblob`` or an
  option. Another process writing the same entry between our write and our
  read would give us a quote over *its* data; the ABI's answer is to compare
  the generation before the write and after the read: it must have grown by
  exactly our one write.

:class:`ConfigfsTsmProvider` runs these steps in order, each a method of
its own (:meth:`~ConfigfsTsmProvider.open_entry`,
:meth:`~ConfigfsTsmProvider.check_provider`,
:meth:`~ConfigfsTsmProvider.read_generation`,
:meth:`~ConfigfsTsmProvider.write_report_data`,
:meth:`~ConfigfsTsmProvider.read_quote`,
:meth:`~ConfigfsTsmProvider.remove_entry`), so that tests drive them against a
plain directory that plays the kernel's part. A raced generation is retried
once, then refused (EvidenceError "tsm_generation_changed"). The quote is
parsed before it is returned and its REPORTDATA compared with ours, so a
node never presents a quote that does not bind its claims.

Verification of ``tdx`` evidence is :class:`cocoon.tee.tdx_policy.TdxVerifier`
against Intel's real root CA (no root override).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from cocoon.tee.claims import REPORT_DATA_LEN
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.evidence import Evidence
from cocoon.tee.tdx_quote import parse_tdx_quote

TDX_PROVIDER = "tdx"
DEFAULT_TSM_PATH = "/sys/kernel/config/tsm/report"
TSM_TDX_PROVIDER = "tdx_guest"
"""What ``provider`` reads in a TDX guest."""
ATTEMPTS = 2
"""A raced generation is retried once."""


def _io_error(what: str, exc: OSError) -> AttestationError:
    return AttestationError("tsm_io_error", f"configfs-tsm: cannot {what}: {exc.strerror or exc}")


class ConfigfsTsmProvider:
    """AttestationProvider "tdx": one configfs-tsm report entry per quote."""

    name: str = TDX_PROVIDER
    tsm_provider: str = TSM_TDX_PROVIDER
    """What ``provider`` must read; the SEV-SNP subclass expects ``sev_guest``."""
    guest_kind: str = "TDX"

    def __init__(self, root: Path | str = DEFAULT_TSM_PATH) -> None:
        self.root = Path(root)

    # -- the steps, in order ---------------------------------------------------

    def open_entry(self) -> Path:
        """Create a fresh report entry (mkdir a unique name under the root)."""
        if not self.root.is_dir():
            raise AttestationError(
                "tsm_unavailable",
                f"configfs-tsm not available at {self.root}: not a {self.guest_kind} guest?",
            )
        entry = self.root / f"cocoon-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise _io_error(f"create a report entry in {self.root}", exc) from None
        return entry

    def check_provider(self, entry: Path) -> None:
        """Refuse to go on unless the kernel's quote provider is ours (``tdx_guest``)."""
        try:
            provider = (entry / "provider").read_text().strip()
        except OSError as exc:
            raise _io_error(f"read {entry / 'provider'}", exc) from None
        if provider != self.tsm_provider:
            raise AttestationError(
                "tsm_wrong_provider",
                f"configfs-tsm at {self.root} is served by {provider!r}, not {self.tsm_provider!r}",
            )

    def read_generation(self, entry: Path) -> int:
        """The entry's write counter."""
        try:
            return int((entry / "generation").read_text().strip())
        except OSError as exc:
            raise _io_error(f"read {entry / 'generation'}", exc) from None
        except ValueError:
            raise EvidenceError("malformed", f"{entry / 'generation'} is not a number") from None

    def write_report_data(self, entry: Path, report_data: bytes) -> None:
        """Write the 64 bytes the quote must commit to."""
        try:
            (entry / "inblob").write_bytes(report_data)
        except OSError as exc:
            raise _io_error(f"write {entry / 'inblob'}", exc) from None

    def read_quote(self, entry: Path) -> bytes:
        """Read the quote (the kernel makes it on this read)."""
        try:
            quote = (entry / "outblob").read_bytes()
        except OSError as exc:
            raise _io_error(f"read {entry / 'outblob'}", exc) from None
        if not quote:
            raise EvidenceError("malformed", f"{entry / 'outblob'} is empty")
        return quote

    def remove_entry(self, entry: Path) -> None:
        """Remove the report entry (configfs removes its attributes with it)."""
        # A leftover entry holds no secret, and the quote is already ours.
        with contextlib.suppress(OSError):
            entry.rmdir()

    def read_auxblob(self, entry: Path) -> bytes:
        """Read the auxiliary blob (SEV-SNP: the host's certificate table), b"" if none."""
        try:
            return (entry / "auxblob").read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise _io_error(f"read {entry / 'auxblob'}", exc) from None

    def check_quote(self, quote: bytes, report_data: bytes) -> None:
        """Parse the quote and refuse it unless it binds ``report_data``."""
        parsed = parse_tdx_quote(quote)  # EvidenceError("malformed")
        if not hmac.compare_digest(parsed.report.report_data, report_data):
            raise EvidenceError(
                "report_data_mismatch", "the quote from configfs-tsm does not bind our claims"
            )

    # -- the provider ------------------------------------------------------------

    def request(self, report_data: bytes) -> tuple[bytes, bytes]:
        """(outblob, auxblob) from the kernel for ``report_data``, checked by ``check_quote``."""
        if len(report_data) != REPORT_DATA_LEN:
            raise EvidenceError(
                "malformed", f"report data must be {REPORT_DATA_LEN} bytes, got {len(report_data)}"
            )
        entry = self.open_entry()
        try:
            self.check_provider(entry)
            for _attempt in range(ATTEMPTS):
                before = self.read_generation(entry)
                self.write_report_data(entry, report_data)
                quote = self.read_quote(entry)
                aux = self.read_auxblob(entry)
                if self.read_generation(entry) == before + 1:
                    break
            else:
                raise EvidenceError(
                    "tsm_generation_changed",
                    f"another writer used {entry} while we read the quote ({ATTEMPTS} attempts)",
                )
        finally:
            self.remove_entry(entry)
        self.check_quote(quote, report_data)
        return quote, aux

    def quote(self, report_data: bytes) -> bytes:
        """A quote whose report data is ``report_data``, from the kernel."""
        return self.request(report_data)[0]

    def evidence(self, report_data: bytes) -> Evidence:
        return Evidence(provider=TDX_PROVIDER, quote=self.quote(report_data))
