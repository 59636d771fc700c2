"""The model part of a turn: load history and prompt → fit → model (streamed) → store.

Runs under the conversation's claim taken by the responder, which also catches what this
raises (store outages, internal errors) and turns it into an apology. Model failures are
decided here: a short apology in the thread, or the partial reply with a note, and nothing
half-stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from bot.admission import Admission
from bot.llm import Completion, LLMClient, ModelError
from bot.messages import IncomingMessage, ReplyStream, ReplyTarget
from bot.metrics import Metrics
from bot.prompts import Prompts, channel_scope, scopes_for, workspace_scope
from bot.replies import (
    APOLOGY_MODEL,
    APOLOGY_TIMEOUT,
    CUT_OFF,
    FILTERED_PROMPT,
    FILTERED_REPLY,
    INTERRUPTED,
)
from bot.store import Store, StoreUnavailable, Turn, Usage
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_newest, fit_prompt, history_budget, prompt_budget

log = logging.getLogger("threadwise.responder")

_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


def speaker_name(display: str) -> str | None:
    """OpenAI's `name` must match ^[A-Za-z0-9_-]{1,64}$; keep what we can of the speaker."""
    cleaned = _NAME_OK.sub("_", display).strip("_")[:64]
    return cleaned or None


class Answerer:
    def __init__(
        self,
        *,
        store: Store,
        llm: LLMClient | None,
        counter: TokenCounter,
        prompts: Prompts,
        metrics: Metrics,
        token_limit: int,
        max_response_tokens: int,
        model_max_concurrency: int = 256,
    ) -> None:
        self.store = store
        self.llm = llm
        self.counter = counter
        self.prompts = prompts
        self.metrics = metrics
        self.token_limit = token_limit
        self.max_response_tokens = max_response_tokens
        # Model calls in flight in this process. Taken only while holding a conversation's
        # lock and never held while waiting for one, so slots and locks cannot deadlock.
        self._model_slots = asyncio.Semaphore(model_max_concurrency)
        # The work before the model, in arrival order (bot/admission.py).
        self.admission = Admission()

    async def answer(self, message: IncomingMessage, reply: ReplyTarget, turn: Turn) -> None:
        """Answer `message` from the model under the conversation's claim `turn`."""
        if self.llm is None:
            raise RuntimeError("no model configured")
        await self.admission.enter()  # left below, before the model, or when the turn ends
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

        self.admission.leave()
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

    async def _say(self, reply: ReplyTarget, text: str) -> None:
        try:
            await reply.send(text)
        except Exception as exc:
            self.metrics.errors.labels("post").inc()
            log.error("could not post to the thread: %s", type(exc).__name__)
