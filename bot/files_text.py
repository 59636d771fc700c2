"""Text out of files: text-like files decoded, PDFs' text layer extracted (pypdf).

Both are synchronous and meant for a worker thread (`asyncio.to_thread`): decoding a 20 MB log
or walking a PDF's pages would otherwise stall the event loop. Every pass is linear in the
file's size.
"""

from __future__ import annotations

import io
import logging

log = logging.getLogger("threadwise.files")

# Declared types read as text (beyond every `text/*`), and names that say "text" whatever type
# the platform guessed (Slack calls many source files `text/plain`, Teams often
# `application/octet-stream`).
TEXT_MIMETYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/x-javascript",
        "application/typescript",
        "application/x-sh",
        "application/x-shellscript",
        "application/sql",
        "application/x-python",
        "application/x-python-code",
        "application/csv",
        "application/x-log",
    }
)
TEXT_EXTENSIONS = frozenset(
    "txt md markdown rst csv tsv json jsonl ndjson log xml yaml yml toml ini cfg conf env "
    "py js mjs cjs ts tsx jsx java kt kts go rs rb php c h cc cpp hpp cs swift scala sh bash "
    "zsh ps1 sql html htm css scss less vue svelte lua r m pl tf hcl gradle properties "
    "dockerfile makefile diff patch srt vtt tex bib graphql proto".split()
)
PDF_MIMETYPES = frozenset({"application/pdf", "application/x-pdf"})
# PDF pages read at most; the token budget decides what of their text reaches the model.
PDF_MAX_PAGES = 2000


class TextError(ValueError):
    """The bytes are not text (or not a PDF) as declared."""


def extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    if "." not in base:
        return base  # Dockerfile, Makefile
    return base.rsplit(".", 1)[-1]


def is_text_type(mimetype: str, name: str) -> bool:
    mime = mimetype.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in TEXT_MIMETYPES or extension(name) in TEXT_EXTENSIONS


def is_pdf_type(mimetype: str, name: str) -> bool:
    mime = mimetype.split(";", 1)[0].strip().lower()
    return mime in PDF_MIMETYPES or extension(name) == "pdf"


def looks_like_html(data: bytes) -> bool:
    """An HTML page (what Slack answers, with status 200, to a download without the token)."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def decode_text(data: bytes) -> str:
    """UTF-8 (or UTF-16 with a byte-order mark) text; binary content is refused.

    A NUL byte or invalid UTF-8 means the file is not text, whatever its name says. Windows-1252
    and Latin-1 files are read with U+FFFD for the bytes UTF-8 cannot take only when few are
    invalid (a stray byte in a log), not when the file is binary.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise TextError("not valid UTF-16 text") from None
    if b"\x00" in data:
        raise TextError("binary content, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") > max(8, len(text) // 100):
            raise TextError("not UTF-8 text") from None
        return text


def pdf_text(data: bytes) -> tuple[str, int]:
    """The text layer of a PDF and its page count (text "" for a scan without one).

    Raises TextError when the bytes are not a PDF pypdf can read (or are encrypted).
    """
    if not data.lstrip()[:5] == b"%PDF-":
        raise TextError("not a PDF")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise TextError("the PDF is password-protected")
            except (PyPdfError, RuntimeError):
                # pypdf raises a RuntimeError subclass for encryption schemes it cannot open.
                raise TextError("the PDF is password-protected") from None
        pages = reader.pages
        out: list[str] = []
        for i, page in enumerate(pages):
            if i >= PDF_MAX_PAGES:
                break
            text = page.extract_text() or ""
            if text.strip():
                out.append(f"[page {i + 1}]\n{text.strip()}")
        return "\n\n".join(out), len(pages)
    except TextError:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        log.info("pdf unreadable: %s", type(exc).__name__)
        raise TextError("a damaged or unreadable PDF") from None
