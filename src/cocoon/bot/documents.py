"""A document sent to the bot, read as text here, before anything is sealed: the
text leaves this process only inside a request sealed to an attested worker.

Text files are decoded as UTF-8 (a BOM is honoured; invalid bytes refuse the
file rather than garble it); PDFs are read with pypdf, page by page. Scanned
PDFs without a text layer have nothing to read and are refused as such.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from .errors import DocumentError

# Suffixes read as text whatever the MIME type Telegram reports.
TEXT_SUFFIXES = frozenset(
    {".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".log", ".rst", ".html", ".xml"}
    | {".yaml", ".yml", ".toml", ".ini", ".py", ".js", ".ts", ".go", ".rs", ".c", ".h", ".sql"}
)
PDF_MAGIC = b"%PDF-"


@dataclass(frozen=True)
class DocumentText:
    """What was read of a document: its text (cut to the limit) and whether it was cut."""

    name: str
    kind: str  # "text" or "pdf"
    text: str
    total_chars: int
    pages: int = 0

    @property
    def truncated(self) -> bool:
        return len(self.text) < self.total_chars


def is_pdf(name: str, mime_type: str, data: bytes) -> bool:
    return data.startswith(PDF_MAGIC) or mime_type == "application/pdf" or name.endswith(".pdf")


def is_text(name: str, mime_type: str) -> bool:
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return (
        mime_type.startswith("text/")
        or mime_type == "application/json"
        or (suffix in TEXT_SUFFIXES)
    )


def extract_text(name: str, mime_type: str, data: bytes, max_chars: int) -> DocumentText:
    """The document's text; DocumentError when it has none that can be read."""
    name_lower = name.lower()
    if is_pdf(name_lower, mime_type, data):
        text, pages = _pdf_text(data)
        kind = "pdf"
    elif is_text(name_lower, mime_type):
        text, pages, kind = _plain_text(data), 0, "text"
    else:
        raise DocumentError(
            f"{name or 'this file'} is {mime_type or 'of an unknown kind'}: "
            "send a text file or a PDF"
        )
    text = _tidy(text)
    if not text:
        raise DocumentError(f"{name or 'the document'} has no text to read")
    return DocumentText(name, kind, text[:max_chars], len(text), pages)


def summary_request(document: DocumentText, caption: str = "") -> str:
    """The question that asks for a summary of the document."""
    cut = (
        f" (the first {len(document.text)} of its {document.total_chars} characters)"
        if document.truncated
        else ""
    )
    ask = caption.strip() or "Summarise this document in a few sentences."
    return f'{ask}\n\nDocument "{document.name}"{cut}:\n"""\n{document.text}\n"""'


def _plain_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
    except UnicodeDecodeError:
        pass
    raise DocumentError("the file is not UTF-8 text")


def _pdf_text(data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf warns through logging about every repaired cross-reference table.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError("the PDF is encrypted: send it without a password")
        texts = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"the PDF could not be read: {exc}") from None
    if not any(text.strip() for text in texts):
        raise DocumentError("the PDF has no text layer (a scan?): nothing to summarise")
    return "\n\n".join(texts), len(texts)


def _tidy(text: str) -> str:
    """Text without NULs and with runs of blank lines shortened: fewer tokens, same text."""
    lines = [line.rstrip() for line in text.replace("\x00", "").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
