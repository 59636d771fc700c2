"""Files and images shared with a message → content parts the model reads (docs/spec.md §3, §6).

The adapters declare each file (`bot.messages.Attachment`: name, declared type and size, and a
`fetch(limit)` that downloads from the platform's own file host); this module decides what
becomes of it:

- images (PNG, JPEG, GIF, WebP), when the model sees images (`MODEL_SUPPORTS_IMAGES`) → an
  `image_url` part with a data URL and `detail: high`, counted by OpenAI's formula
  (bot/images.py); otherwise the user is told the bot cannot see images;
- text-like files and PDFs → a text part labelled with the file's name (bot/files_text.py), a
  scanned PDF without a text layer → a notice;
- anything else (Office documents, archives, audio, …) → a notice naming the types read;
- over `FILES_MAX_BYTES` (declared, or once the download reaches the limit), bytes that are not
  what the type says (an HTML sign-in page instead of the file) or a refused download → a
  notice. The text of the message is answered all the same.

A part that does not fit the token budget beside the system prompt and the text is not sent
(the user is told its size and the room); long files are not cut, so the model never answers
from part of a file believing it has all of it.

History: a message is stored with its parts and one token count covering them, so trimming
drops a message and its files as one. Text parts are kept as they are (bounded by the history's
token budget). Images are not kept inside the history: each goes into one of `IMAGES_KEPT`
slots of its conversation in the store's cache (round robin, `HISTORY_TTL_SECONDS`), and the
message keeps a reference (slot, sha256); a reference whose slot has since been reused reads as
a short note. So a conversation keeps at most `IMAGES_KEPT` images, each at most what the model
views (2048×768 px, re-encoded when larger than bot/images.py's `KEEP_MAX_BYTES`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot import files_text, images
from bot.messages import Attachment, AttachmentError, Cache, IncomingMessage
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage

log = logging.getLogger("threadwise.files")

IMAGES_KEPT = 6  # images per conversation kept for later turns
MAX_IMAGES_PER_MESSAGE = 4  # with IMAGES_KEPT, within the 10 images a request may carry
MAX_FILES_PER_MESSAGE = 10
READ_TYPES = (
    "images (PNG, JPEG, GIF, WebP), PDFs and text files (plain text, Markdown, CSV, JSON, "
    "logs, source code)"
)
_IMAGE_EXTENSIONS = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
_IMAGE_EXTENSIONS |= {"gif": "image/gif", "webp": "image/webp"}
_VISION_MODELS = re.compile(
    r"^(?:gpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-4-vision|gpt-5|o1(?!-mini|-preview)|o3(?!-mini)|o4)"
)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f`*_~<>|\[\]\\]+")
_TEXT_IN_THREAD = 64 * 1024  # decode bigger files off the event loop


def images_supported(setting: str, model: str | None, deployment: str | None) -> bool:
    """MODEL_SUPPORTS_IMAGES: `true`/`false`, or `auto` from the model (else deployment) name."""
    if setting in ("true", "false"):
        return setting == "true"
    name = (model or deployment or "").strip().lower()
    return bool(_VISION_MODELS.match(name))


def display_name(name: str) -> str:
    """A file name safe to echo: no markup, pings or line breaks, at most 80 characters."""
    cleaned = _UNPRINTABLE.sub(" ", name or "").strip()
    cleaned = cleaned[:77] + "…" if len(cleaned) > 80 else cleaned
    return cleaned or "file"


def human_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB".replace(".0 MB", " MB")
    if n >= 1_000:
        return f"{n / 1_000:.0f} KB"
    return f"{n} bytes"


def over_limit(name: str, size: int | None, limit: int) -> str:
    """The notice for a file over FILES_MAX_BYTES; exact byte counts when rounding hides it."""
    if size is None:
        return f"I did not read {name}: it is more than {human_bytes(limit)}, the limit."
    shown, most = human_bytes(size), human_bytes(limit)
    if shown == most:
        shown, most = f"{size:,} bytes", f"{limit:,} bytes"
    return f"I did not read {name}: it is {shown} and the limit is {most}."


def _kind(att: Attachment) -> str | None:
    mime = att.mimetype.split(";", 1)[0].strip().lower()
    ext = files_text.extension(att.name)
    if mime in images.IMAGE_TYPES or mime in ("image/*", "image/jpg"):
        return "image"
    if (not mime or mime == "application/octet-stream") and ext in _IMAGE_EXTENSIONS:
        return "image"
    if files_text.is_pdf_type(mime, att.name):
        return "pdf"
    if files_text.is_text_type(mime, att.name):
        return "text"
    return None


@dataclass(frozen=True, slots=True)
class _Image:
    index: int  # in Shared.parts
    name: str
    tokens: int
    url: str


@dataclass
class Shared:
    """What a message's files became: parts for the model, their tokens, what to tell the user."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    costs: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    images: list[_Image] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(self.costs)

    def within(self, room: int) -> Shared:
        """The parts that fit in `room` tokens, in order; each one left out gets a notice."""
        out = Shared(notices=list(self.notices))
        used = 0
        for i, part in enumerate(self.parts):
            cost, name = self.costs[i], self.names[i]
            if used + cost > room:
                out.notices.append(
                    f"I did not read {name}: it is {cost:,} tokens and this message has room for "
                    f"{max(room - used, 0):,} more (TOKEN_LIMIT, less the system prompt, your "
                    "text and the reply)."
                )
                continue
            used += cost
            image = next((im for im in self.images if im.index == i), None)
            if image is not None:
                out.images.append(replace(image, index=len(out.parts)))
            out.parts.append(part)
            out.costs.append(cost)
            out.names.append(name)
        return out


class Files:
    """Reads attachments (see the module docstring); one per service, shared by every turn."""

    def __init__(
        self,
        counter: TokenCounter,
        cache: Cache,
        *,
        max_bytes: int,
        images_enabled: bool,
        history_ttl: int,
    ) -> None:
        self.counter = counter
        self.cache = cache
        self.max_bytes = max_bytes
        self.images_enabled = images_enabled
        self.history_ttl = history_ttl

    async def read(self, message: IncomingMessage) -> Shared:
        shared = Shared()
        atts = list(message.attachments)
        for att in atts[MAX_FILES_PER_MESSAGE:]:
            shared.notices.append(
                f"I read up to {MAX_FILES_PER_MESSAGE} files per message; I skipped "
                f"{display_name(att.name)}."
            )
        atts = atts[:MAX_FILES_PER_MESSAGE]
        kinds = [_kind(a) for a in atts]
        seen_images = 0
        wanted: list[bool] = []
        for kind in kinds:
            ok = kind != "image" or seen_images < MAX_IMAGES_PER_MESSAGE
            seen_images += kind == "image"
            wanted.append(ok)
        results = await asyncio.gather(
            *(
                self._read_one(att, kind) if ok else self._too_many(att)
                for att, kind, ok in zip(atts, kinds, wanted, strict=True)
            ),
            return_exceptions=True,
        )
        for att, result in zip(atts, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation: the turn is being stopped
                # A library's own failure on odd input: that file is skipped, the rest answered.
                log.warning("attachment unreadable: %s", type(result).__name__)
                shared.notices.append(f"I could not read {display_name(att.name)}.")
                continue
            if isinstance(result, str):
                shared.notices.append(result)
                continue
            part, cost, url = result
            if url is not None:
                shared.images.append(_Image(len(shared.parts), att.name, cost, url))
            shared.parts.append(part)
            shared.costs.append(cost)
            shared.names.append(display_name(att.name))
        return shared

    async def _too_many(self, att: Attachment) -> str:
        return (
            f"I look at up to {MAX_IMAGES_PER_MESSAGE} images per message; I skipped "
            f"{display_name(att.name)}."
        )

    async def _read_one(
        self, att: Attachment, kind: str | None
    ) -> str | tuple[dict[str, Any], int, str | None]:
        name = display_name(att.name)
        if att.size is not None and att.size > self.max_bytes:
            return over_limit(name, att.size, self.max_bytes)
        if kind is None:
            return f"I can't read {name} ({att.mimetype or 'unknown type'}): I read {READ_TYPES}."
        if kind == "image" and not self.images_enabled:
            return f"I can't see images with this model, so I did not look at {name}."
        try:
            data = await att.fetch(self.max_bytes)
        except AttachmentError as exc:
            log.info("attachment not fetched: %s", exc.kind, extra={"detail": exc.detail})
            if exc.kind == "too_large":
                return over_limit(name, exc.size, self.max_bytes)
            if exc.kind == "unavailable":
                return f"I could not get {name}: it is no longer available to me."
            return f"I could not download {name}: the download was refused."
        if len(data) > self.max_bytes:
            return over_limit(name, None, self.max_bytes)
        declared_html = att.mimetype.lower().startswith(("text/html", "application/xhtml"))
        if files_text.looks_like_html(data) and not declared_html:
            log.info("attachment refused: a web page instead of the file")
            return (
                f"I could not download {name}: I got a web page (a sign-in page?) instead of "
                "the file."
            )
        try:
            if kind == "image":
                return await self._image(att, data)
            if kind == "pdf":
                return await self._pdf(att, data, name)
            return await self._text(att, data, "text file")
        except (images.ImageError, files_text.TextError) as exc:
            log.info("attachment refused: %s", exc)
            return f"I did not read {name}: its content is not what its type says ({exc})."

    async def _image(self, att: Attachment, data: bytes) -> tuple[dict[str, Any], int, str]:
        declared = att.mimetype.split(";", 1)[0].strip().lower().replace("image/jpg", "image/jpeg")
        if declared not in images.IMAGE_TYPES:
            declared = _IMAGE_EXTENSIONS.get(files_text.extension(att.name), declared)
        img = await asyncio.to_thread(images.prepare_image, data, declared)
        url = f"data:{img.mime};base64," + base64.b64encode(img.data).decode("ascii")
        return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}, img.tokens, url

    async def _pdf(
        self, att: Attachment, data: bytes, name: str
    ) -> str | tuple[dict[str, Any], int, None]:
        text, pages = await asyncio.to_thread(files_text.pdf_text, data)
        if not text.strip():
            return (
                f"{name} has no text I can read ({pages} page{'s' if pages != 1 else ''} without "
                "a text layer: a scan or images?), so I could not read it."
            )
        return await self._labelled(att, text, "PDF")

    async def _text(self, att: Attachment, data: bytes, what: str) -> tuple[dict, int, None]:
        if len(data) > _TEXT_IN_THREAD:
            text = await asyncio.to_thread(files_text.decode_text, data)
        else:
            text = files_text.decode_text(data)
        return await self._labelled(att, text, what)

    async def _labelled(self, att: Attachment, text: str, what: str) -> tuple[dict, int, None]:
        label = display_name(att.name)
        body = f"[Attached {what}: {label}]\n{text}\n[End of {label}]"
        return {"type": "text", "text": body}, await self.counter.acount(body), None

    # -- history

    def _slot_key(self, conversation: str, slot: int) -> str:
        return f"img:{conversation}:{slot}"

    async def restore(
        self, conversation: str, history: Sequence[StoredMessage]
    ) -> list[StoredMessage]:
        """History with each stored image reference replaced by the image (or a note)."""
        refs = [
            (i, j, p)
            for i, m in enumerate(history)
            for j, p in enumerate(m.parts)
            if p.get("type") == "image_ref"
        ]
        if not refs:
            return list(history)
        slots = sorted({int(p["slot"]) for _, _, p in refs})
        try:
            values = await asyncio.gather(
                *(self.cache.cache_get(self._slot_key(conversation, s)) for s in slots)
            )
        except Exception as exc:
            log.warning("stored images unavailable: %s", type(exc).__name__)
            values = [None] * len(slots)
        by_slot = dict(zip(slots, values, strict=True))
        out = list(history)
        for i, j, p in refs:
            value = by_slot.get(int(p["slot"])) or ""
            sha, _, url = value.partition("\t")
            if url and sha == p.get("sha"):
                part = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
            else:
                label = p.get("name") or "image"
                note = f"[An image, {label}, was shared here; it is no longer kept.]"
                part = {"type": "text", "text": note}
            parts = list(out[i].parts)
            parts[j] = part
            out[i] = replace(out[i], parts=tuple(parts))
        return out

    async def keep(
        self,
        conversation: str,
        history: Sequence[StoredMessage],
        message: StoredMessage,
        shared: Shared,
    ) -> StoredMessage:
        """The message as history stores it: images moved into the conversation's slots."""
        if not shared.images:
            return message
        last = -1
        for m in reversed(history):
            found = [int(p["slot"]) for p in m.parts if p.get("type") == "image_ref"]
            if found:
                last = found[-1]
                break
        parts = list(message.parts)
        for n, image in enumerate(shared.images):
            slot = (last + 1 + n) % IMAGES_KEPT
            sha = hashlib.sha256(image.url.encode("ascii")).hexdigest()[:32]
            await self.cache.cache_set(
                self._slot_key(conversation, slot), f"{sha}\t{image.url}", self.history_ttl
            )
            parts[image.index] = {
                "type": "image_ref",
                "slot": slot,
                "sha": sha,
                "name": display_name(image.name),
                "tokens": image.tokens,
            }
        return replace(message, parts=tuple(parts))
