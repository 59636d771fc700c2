"""One turn: limits → dedupe + lock → a command, or the model (`bot/answer.py`) → release.

The responder and the answerer are the only places that decide what a user sees when
something fails: a short apology in the thread, never a stack trace, and nothing half-stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict

from bot.answer import Answerer
from bot.attachments import Files
from bot.commands import Commands, is_command
from bot.llm import LLMClient
from bot.logs import turn_context
from bot.messages import IncomingMessage, ReplyTarget
from bot.metrics import Metrics
from bot.prompts import Prompts
from bot.quota import Quotas
from bot.replies import APOLOGY_INTERNAL, APOLOGY_STORE, BUSY, EMPTY_MENTION
from bot.store import NotSubscribed, Store, StoreUnavailable
from bot.summary import Summarizer
from bot.token_ratio import TokenRatio
from bot.tokens import TokenCounter

log = logging.getLogger("threadwise.responder")

KNOWN_CONVERSATIONS = 10_000


def encodable(text: str) -> str:
    """`text` with any lone UTF-16 surrogate (a JSON escape such as "\\ud83d" of a cut emoji)
    replaced by U+FFFD: such text cannot be sent to the model or stored, whatever is retried."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


class Responder:
    def __init__(
        self,
        *,
        store: Store,
        llm: LLMClient | None,
        counter: TokenCounter,
        prompts: Prompts,
        commands: Commands,
        metrics: Metrics,
        token_limit: int,
        max_response_tokens: int,
        lock_wait: float = 300.0,
        token_ratio: TokenRatio | None = None,
        conversation_queue_max: int = 50,
        summarizer: Summarizer | None = None,
        files: Files | None = None,
        quotas: Quotas | None = None,
        redact: bool = False,
    ) -> None:
        self.store = store
        self.commands = commands
        self.metrics = metrics
        self.answerer = Answerer(
            store=store,
            llm=llm,
            counter=counter,
            prompts=prompts,
            metrics=metrics,
            token_limit=token_limit,
            max_response_tokens=max_response_tokens,
            token_ratio=token_ratio,
            summarizer=summarizer,
            files=files,
            quotas=quotas,
            redact=redact,
        )
        self.lock_wait = lock_wait
        self._tasks: set[asyncio.Task[None]] = set()
        # Conversations this process has taken part in (bounded): when Redis is down and cannot
        # say whether a thread is the bot's, only these get an apology, not every thread around.
        self._known: OrderedDict[str, None] = OrderedDict()
        # Messages of each conversation inside a turn here (waiting for its lock or answered):
        # one being answered plus `conversation_queue_max` waiting; more get BUSY.
        self.conversation_queue_max = conversation_queue_max
        self._pending: dict[str, int] = {}
        # Posts already told BUSY (bounded), so a post delivered twice (Slack's app_mention
        # and message) is not told twice.
        self._told_busy: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- MessageHandler

    def submit(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(message, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> int:
        """Wait for replies in flight (shutdown); returns how many did not finish in time."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        return len(pending)

    async def handle(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        message = dataclasses.replace(
            message, text=encodable(message.text), user_name=encodable(message.user_name)
        )
        with turn_context(message.conversation_key, message.event_id or uuid.uuid4().hex[:12]):
            try:
                await self._handle(message, reply)
            except StoreUnavailable as exc:
                self.metrics.errors.labels("store").inc()
                log.error("store unavailable: %s", exc)
                if message.mentions_bot or message.is_dm or message.conversation_key in self._known:
                    await self._say(reply, APOLOGY_STORE)
            except TimeoutError:
                self.metrics.errors.labels("lock_timeout").inc()
                log.error("timed out waiting for the conversation lock")
                await self._say(reply, APOLOGY_INTERNAL)
            except Exception:
                self.metrics.errors.labels("internal").inc()
                log.exception("turn failed")
                await self._say(reply, APOLOGY_INTERNAL)

    async def _say(self, reply: ReplyTarget, text: str) -> None:
        try:
            await reply.send(text)
        except Exception as exc:
            self.metrics.errors.labels("post").inc()
            log.error("could not post to the thread: %s", type(exc).__name__)

    # -- the turn

    async def _handle(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        # Counted before the first await, so a burst is let in (or refused) in arrival order.
        conv = message.conversation_key
        pending = self._pending.get(conv, 0)
        if pending > self.conversation_queue_max:
            await self._busy(message, reply)
            return
        self._pending[conv] = pending + 1
        try:
            await self._turn(message, reply)
        finally:
            left = self._pending[conv] - 1
            if left:
                self._pending[conv] = left
            else:
                del self._pending[conv]

    async def _busy(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        """Too many messages of this conversation wait here: say so rather than queue more.

        The post is not claimed (`acquire` never ran), so a later delivery or retry of it is
        answered like any other message; nothing is stored for it.
        """
        conv = message.conversation_key
        addressed = message.mentions_bot or message.is_dm or conv in self._known
        if not addressed and not await self.store.is_subscribed(conv):
            log.info("queue full; message not addressed to the bot ignored")
            return
        post = (conv, message.message_id)  # the post, as the store's claim identifies it
        if post in self._told_busy:
            log.info("queue full; second delivery of a post already told busy")
            return
        self.metrics.busy.labels(message.platform).inc()
        self._told_busy[post] = None
        if len(self._told_busy) > KNOWN_CONVERSATIONS:
            self._told_busy.popitem(last=False)
        log.warning("conversation queue full; told the user to retry")
        await self._say(reply, BUSY)

    async def _turn(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        conv = message.conversation_key
        try:
            # A mention subscribes the bot to the thread at once, so replies that follow before
            # this first answer is done are answered too (after it, in order), not dropped. A
            # thread reply without a mention is ours only if the bot is subscribed: checked in
            # the claim, in arrival order, so it never overtakes the message before it.
            turn = await self.store.acquire(
                conv,
                message.message_id,
                self.lock_wait,
                subscribe=message.mentions_bot and not message.is_dm,
                only_if_subscribed=not (message.mentions_bot or message.is_dm),
            )
        except NotSubscribed:
            # A thread the bot was never mentioned in (or whose subscription expired): common,
            # so not worth a line at INFO; at DEBUG it explains a reply that never came.
            log.debug("not subscribed to this thread: message left alone")
            return
        self._known[conv] = None
        self._known.move_to_end(conv)
        if len(self._known) > KNOWN_CONVERSATIONS:
            self._known.popitem(last=False)
        if turn is None:
            self.metrics.duplicates.labels(message.platform).inc()
            log.info("duplicate delivery dropped")
            return
        self.metrics.lock_wait.observe(turn.waited)
        try:
            text = message.text.strip()
            if not text and not message.attachments:
                await self.store.subscribe(conv)
                await reply.send(EMPTY_MENTION)
            elif is_command(text):
                result = await self.commands.run(message)
                self.metrics.commands.labels(result.name, "yes" if result.ok else "no").inc()
                log.info("command run", extra={"command": result.name, "ok": result.ok})
                await reply.send(result.text)
            else:
                await self.answerer.answer(message, reply, turn)
        finally:
            await self.store.release(turn)
