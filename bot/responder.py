"""One turn: dedupe → lock → load history and prompt → fit → model (streamed) → store → release.

The responder is the only place that decides what a user sees when something fails: a short
apology in the thread, never a stack trace, and nothing half-stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections import OrderedDict

from bot.commands import Commands, is_command
from bot.llm import Completion, LLMClient, ModelError
from bot.logs import turn_context
from bot.messages import IncomingMessage, ReplyStream, ReplyTarget
from bot.metrics import Metrics
from bot.prompts import Prompts, channel_scope, scopes_for, workspace_scope
from bot.store import NotSubscribed, Store, StoreUnavailable, Usage
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_newest, fit_prompt, history_budget, prompt_budget

log = logging.getLogger("threadwise.responder")

APOLOGY_MODEL = (
    "Sorry — I couldn't get an answer from the language model just now. "
    "Please try again in a minute."
)
APOLOGY_TIMEOUT = "Sorry — the language model took too long to answer. Please try again."
APOLOGY_STORE = (
    "Sorry — I can't reach my memory store right now, so I can't answer safely. "
    "Please try again shortly."
)
APOLOGY_INTERNAL = "Sorry — something went wrong on my side while answering. Please try again."
FILTERED_PROMPT = (
    "I can't answer that: Azure OpenAI's content filter flagged the message. "
    "Please rephrase it. (Nothing from this exchange was kept in my memory.)"
)
FILTERED_REPLY = (
    "_The rest of the reply was withheld by Azure OpenAI's content filter; "
    "this exchange was not kept in my memory._"
)
CUT_OFF = "_(The reply was cut off at the length limit, MAX_RESPONSE_TOKENS.)_"
INTERRUPTED = "_(The reply was interrupted — sorry. Please ask again; this exchange was not kept.)_"
EMPTY_MENTION = "Hi! Ask me anything in this thread, or type `!help` for commands."
BUSY = "I'm busy with earlier messages in this conversation — please try again in a moment."

KNOWN_CONVERSATIONS = 10_000

_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


def encodable(text: str) -> str:
    """`text` with any lone UTF-16 surrogate (a JSON escape such as "\\ud83d" of a cut emoji)
    replaced by U+FFFD: such text cannot be sent to the model or stored, whatever is retried."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def speaker_name(display: str) -> str | None:
    """OpenAI's `name` must match ^[A-Za-z0-9_-]{1,64}$; keep what we can of the speaker."""
    cleaned = _NAME_OK.sub("_", display).strip("_")[:64]
    return cleaned or None


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
        model_max_concurrency: int = 256,
        conversation_queue_max: int = 50,
    ) -> None:
        self.store = store
        self.llm = llm
        self.counter = counter
        self.prompts = prompts
        self.commands = commands
        self.metrics = metrics
        self.token_limit = token_limit
        self.max_response_tokens = max_response_tokens
        self.lock_wait = lock_wait
        self._tasks: set[asyncio.Task[None]] = set()
        # Conversations this process has taken part in (bounded): when Redis is down and cannot
        # say whether a thread is the bot's, only these get an apology, not every thread around.
        self._known: OrderedDict[str, None] = OrderedDict()
        # Model calls in flight in this process. Taken only while holding a conversation's
        # lock and never held while waiting for one, so slots and locks cannot deadlock.
        self._model_slots = asyncio.Semaphore(model_max_concurrency)
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
            if not text:
                await self.store.subscribe(conv)
                await reply.send(EMPTY_MENTION)
            elif is_command(text):
                result = await self.commands.run(message)
                self.metrics.commands.labels(result.name, "yes" if result.ok else "no").inc()
                log.info("command run", extra={"command": result.name, "ok": result.ok})
                await reply.send(result.text)
            else:
                await self._answer(message, reply, turn)
        finally:
            await self.store.release(turn)

    async def _answer(self, message: IncomingMessage, reply: ReplyTarget, turn) -> None:
        if self.llm is None:
            raise RuntimeError("no model configured")
        conv = message.conversation_key
        text = message.text.strip()
        name = None if message.is_dm else speaker_name(message.user_name)
        user_tokens = await self.counter.amessage_tokens("user", text, name)
        scopes = scopes_for(message)
        # The system prompt is not known before the load: read what could fit beside the message.
        ceiling = history_budget(self.token_limit, self.max_response_tokens, 0, user_tokens)
        ctx = await self.store.load(conv, max(ceiling, 0), scopes)
        prompt = self.prompts.resolve(scopes, ctx.prompts)
        system_msg = StoredMessage(
            "system", prompt.text, await self.counter.amessage_tokens("system", prompt.text)
        )
        user_msg = StoredMessage("user", text, user_tokens, name)
        fitted = fit_prompt(
            system_msg, ctx.history, user_msg, self.token_limit, self.max_response_tokens
        )
        if fitted is None:
            room = prompt_budget(self.token_limit, self.max_response_tokens) - system_msg.tokens
            await reply.send(
                f"Your message is {user_tokens:,} tokens, but this bot can take at most "
                f"{max(room, 0):,} tokens per message (TOKEN_LIMIT {self.token_limit:,}, less "
                f"the system prompt and {self.max_response_tokens:,} reserved for the reply). "
                "Please shorten it or split it up."
            )
            return
        history = fitted[1:-1]
        if len(history) < len(ctx.history):
            self.metrics.trimmed.inc(len(ctx.history) - len(history))

        await reply.typing()
        stream = reply.stream()
        shown: list[str] = []

        async def on_delta(delta: str) -> None:
            shown.append(delta)
            await stream.append(delta)

        started = time.monotonic()
        completion: Completion | None = None
        for attempt in (1, 2):
            messages = [m.to_openai() for m in (system_msg, *history, user_msg)]
            try:
                async with self._model_slots:
                    with self.metrics.model_in_flight.track_inprogress():
                        completion = await self.llm.stream(messages, on_delta)
                break
            except ModelError as exc:
                self.metrics.errors.labels(f"model_{exc.kind}").inc()
                log.warning("model call failed: %s", exc.kind)
                if exc.kind == "context_length" and attempt == 1 and not shown:
                    # Our count disagreed with the service's: trim harder once and retry.
                    kept = sum(m.tokens for m in history)
                    history = fit_newest(history, kept // 2)
                    continue
                await self._fail(exc, reply, stream, "".join(shown))
                return
        assert completion is not None
        self.metrics.model_latency.observe(time.monotonic() - started)
        if completion.first_token_seconds is not None:
            self.metrics.first_token.observe(completion.first_token_seconds)

        final = completion.text
        keep = True
        if completion.finish_reason == "content_filter":
            final = (final + "\n\n" if final else "") + FILTERED_REPLY
            keep = False
        elif completion.finish_reason == "length":
            final = (final + "\n\n" if final else "") + CUT_OFF
        elif not final.strip():
            final = "_(The model returned an empty reply.)_"
            keep = False
        await stream.finish(final)
        self.metrics.replies.labels(message.platform).inc()

        prompt_used = completion.prompt_tokens
        completion_used = completion.completion_tokens
        if prompt_used is not None:
            self.metrics.tokens.labels("prompt").inc(prompt_used)
        if completion_used is not None:
            self.metrics.tokens.labels("completion").inc(completion_used)
        usage = Usage(
            workspace=workspace_scope(message.platform, message.workspace),
            channel=channel_scope(message.platform, message.workspace, message.channel),
            user=f"{message.platform}:{message.workspace}:{message.user_id}",
            prompt_tokens=prompt_used or 0,
            completion_tokens=completion_used or 0,
        )
        try:
            if not keep:
                await self.store.commit(turn, [], usage)
                return
            reply_tokens = await self.counter.amessage_tokens("assistant", completion.text)
            dropped = await self.store.commit(
                turn, [user_msg, StoredMessage("assistant", completion.text, reply_tokens)], usage
            )
        except StoreUnavailable as exc:
            # The reply is already in the thread: an apology now would contradict it. The
            # exchange is simply not remembered (and the lock's lease frees the conversation).
            self.metrics.errors.labels("store").inc()
            log.error("reply posted but not stored: %s", exc)
            return
        log.info(
            "answered",
            extra={
                "prompt_tokens": prompt_used,
                "completion_tokens": completion_used,
                "history_messages": len(history),
                "stored_dropped": dropped,
                "finish_reason": completion.finish_reason,
            },
        )

    async def _fail(
        self, exc: ModelError, reply: ReplyTarget, stream: ReplyStream, partial: str
    ) -> None:
        if partial:
            await stream.finish(partial + "\n\n" + INTERRUPTED)
            return
        if exc.kind == "content_filter":
            await self._say(reply, FILTERED_PROMPT)
        elif exc.kind == "timeout":
            await self._say(reply, APOLOGY_TIMEOUT)
        else:
            await self._say(reply, APOLOGY_MODEL)
