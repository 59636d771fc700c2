"""The model part of a turn: load history and prompt → fit → model (streamed) → store.

Runs under the conversation's claim taken by the responder, which also catches what this
raises (store outages, internal errors) and turns it into an apology. Model failures are
decided here: a short apology in the thread, or the partial reply with a note, and nothing
half-stored.
"""

from __future__ import annotations

import logging
import re
import time

from bot.admission import Admission
from bot.attachments import Files
from bot.llm import Completion, LLMClient, ModelError
from bot.messages import AnswerInfo, IncomingMessage, ReplyStream, ReplyTarget
from bot.metrics import Metrics
from bot.pacing import status_kept
from bot.prompts import Prompts, channel_scope, scopes_for, workspace_scope
from bot.quota import Quotas, user_id
from bot.redact_map import Placeholders
from bot.replies import (
    CUT_OFF,
    DEADLINE,
    EMPTY_REPLY,
    FILTERED_REPLY,
    INTERRUPTED,
    model_apology,
)
from bot.store import Store, StoreUnavailable, Turn, TurnRecord, Usage
from bot.summary import SUMMARY_LABEL, Summarizer
from bot.token_ratio import TokenRatio
from bot.tokens import TokenCounter
from bot.trimming import (
    REPLY_PRIMING,
    StoredMessage,
    fit_newest,
    fit_prompt,
    history_budget,
    prompt_budget,
)

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
        token_ratio: TokenRatio | None = None,
        summarizer: Summarizer | None = None,
        files: Files | None = None,
        quotas: Quotas | None = None,
        redact: bool = False,
    ) -> None:
        self.store = store
        self.summarizer = summarizer
        self.files = files
        self.quotas = quotas  # budgets and rate limit (bot/quota.py); None: not metered
        self.redact = redact  # REDACT_PII (bot/redact.py): before the model and the store
        self.llm = llm
        self.counter = counter
        self.prompts = prompts
        self.metrics = metrics
        self.token_limit = token_limit
        self.max_response_tokens = max_response_tokens
        # How much more the model's server counts than we do (bot/token_ratio.py). Model calls
        # in flight are limited by the client's pacer (bot/pacing.py), entered only while
        # holding a conversation's lock and never held while waiting for one.
        self.token_ratio = token_ratio or TokenRatio()
        # The work before the model, in arrival order (bot/admission.py).
        self.admission = Admission()

    async def answer(self, message: IncomingMessage, reply: ReplyTarget, turn: Turn) -> None:
        """Answer `message` from the model under the conversation's claim `turn`."""
        if self.llm is None:
            raise RuntimeError("no model configured")
        # Files are downloaded and read before the gate: slow I/O must not hold a place.
        shared = await self.files.read(message) if self.files and message.attachments else None
        await self.admission.enter()  # left below, before the model, or when the turn ends
        conv = message.conversation_key
        text = message.text.strip()
        token_limit = self.token_ratio.budget_limit(
            self.llm.deployment, self.token_limit, self.max_response_tokens
        )
        name = None if message.is_dm else speaker_name(message.user_name)
        user_tokens = await self.counter.amessage_tokens("user", text, name)
        scopes = scopes_for(message)
        # The system prompt is not known before the load: read what could fit beside the message.
        new_tokens = user_tokens + (shared.tokens if shared else 0)
        ceiling = history_budget(token_limit, self.max_response_tokens, 0, new_tokens)
        meter = self.quotas.request(message) if self.quotas is not None else None
        ctx = await self.store.load(conv, max(ceiling, 0), scopes, meter, redactions=self.redact)
        if self.quotas is not None and ctx.meter is not None:
            if refusal := self.quotas.refusal(ctx.meter):
                self.metrics.errors.labels("quota").inc()
                log.info("over budget or rate limit; model not called")
                await reply.send(refusal)  # nothing is stored for this message
                return
        placeholders = Placeholders(conv, ctx.redactions) if self.redact else None
        if placeholders is not None:
            text = (await placeholders.aredact(text)).text
            user_tokens = await self.counter.amessage_tokens("user", text, name)
        prompt = self.prompts.resolve(scopes, ctx.prompts)
        system = f"{prompt.text}\n\n{message.context}" if message.context else prompt.text
        system_msg = StoredMessage(
            "system", system, await self.counter.amessage_tokens("system", system)
        )
        asker = user_id(message)
        user_msg = StoredMessage("user", text, user_tokens, name, user=asker)
        if shared is not None and self.files is not None:
            room = prompt_budget(token_limit, self.max_response_tokens) - system_msg.tokens
            shared = shared.within(room - user_tokens)
            if shared.notices:
                await self._say(reply, "\n".join(shared.notices))
            if not text and not shared.parts:
                return  # nothing left to answer; the notices said why
            parts = tuple(shared.parts)
            user_msg = StoredMessage(
                "user", text, user_tokens + shared.tokens, name, parts=parts, user=asker
            )
        stored_before = ctx.history  # images by reference, as the store keeps them
        loaded = await self.files.restore(conv, ctx.history) if self.files else ctx.history
        context = []
        if ctx.summary is not None:
            text_ = SUMMARY_LABEL + ctx.summary.text
            context = [StoredMessage("system", text_, ctx.summary.tokens)]
        fitted = fit_prompt(
            system_msg, loaded, user_msg, token_limit, self.max_response_tokens, context
        )
        if fitted is None and context:
            # A message too long to go with the summary still goes without it.
            context = []
            fitted = fit_prompt(system_msg, loaded, user_msg, token_limit, self.max_response_tokens)
        if fitted is None:
            room = prompt_budget(token_limit, self.max_response_tokens) - system_msg.tokens
            await reply.send(
                f"Your message is {user_tokens:,} tokens, but this bot can take at most "
                f"{max(room, 0):,} tokens per message (TOKEN_LIMIT {self.token_limit:,}, less "
                f"the system prompt and {self.max_response_tokens:,} reserved for the reply). "
                "Please shorten it or split it up."
            )
            return
        history = fitted[1 + len(context) : -1]
        if len(history) < len(ctx.history):
            self.metrics.trimmed.inc(len(ctx.history) - len(history))

        self.admission.leave()
        stream = reply.stream()
        shown: list[str] = []
        stop_status: list = []

        async def on_delta(delta: str) -> None:
            if not shown and stop_status:
                stop_status[0]()  # the first words replace the "is thinking…" status
            shown.append(delta)
            await stream.append(delta)

        started = time.monotonic()
        wait_until = started + self.llm.wait_seconds  # one wait for the turn, retries included
        completion: Completion | None = None
        async with status_kept(reply.typing) as stop:
            stop_status.append(stop)
            for attempt in (1, 2):
                sent = (system_msg, *context, *history, user_msg)
                messages = [m.to_openai() for m in sent]
                try:
                    completion = await self.llm.stream(messages, on_delta, wait_until=wait_until)
                    break
                except ModelError as exc:
                    self.metrics.errors.labels(f"model_{exc.kind}").inc()
                    log.warning(
                        "model call failed: %s", exc.kind, extra={"detail": exc.detail[:200]}
                    )
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
        our_prompt = sum(m.tokens for m in sent) + REPLY_PRIMING
        self.token_ratio.observe(self.llm.deployment, completion.prompt_tokens, our_prompt)

        final = completion.text
        keep = True
        if completion.finish_reason == "content_filter":
            final = (final + "\n\n" if final else "") + FILTERED_REPLY
            keep = False
        elif completion.finish_reason == "length":
            final = (final + "\n\n" if final else "") + CUT_OFF
        elif completion.finish_reason == "deadline":
            final = final + "\n\n" + DEADLINE
        elif not final.strip():
            final = EMPTY_REPLY
            keep = False
        info = AnswerInfo(self.llm.deployment, prompt.scope) if keep else None
        await stream.finish(final, answer=info)
        self.metrics.replies.labels(message.platform).inc()

        prompt_used = completion.prompt_tokens
        completion_used = completion.completion_tokens
        if prompt_used is not None:
            self.metrics.tokens.labels("prompt").inc(prompt_used)
        if completion_used is not None:
            self.metrics.tokens.labels("completion").inc(completion_used)
        # A server that reports no usage (llama.cpp when streaming): our own counts, marked.
        estimated = prompt_used is None or completion_used is None
        if prompt_used is None:
            prompt_used = our_prompt
        if completion_used is None:
            completion_used = await self.counter.acount(completion.text)
        usage = Usage(
            workspace=workspace_scope(message.platform, message.workspace),
            channel=channel_scope(message.platform, message.workspace, message.channel),
            user=f"{message.platform}:{message.workspace}:{message.user_id}",
            prompt_tokens=prompt_used,
            completion_tokens=completion_used,
            estimated=estimated,
        )
        # With summaries on, what this prompt left out (the oldest of the stored history) is
        # handed to the summary in the commit; `ctx.stored` is 0 otherwise.
        fold = max(ctx.stored - len(history), 0)
        try:
            if not keep:
                dropped = await self.store.commit(turn, [], usage, fold=fold)
            else:
                kept = completion.text  # the thread shows the reply as written; the store, redacted
                if placeholders is not None:
                    kept = (await placeholders.aredact(kept)).text
                reply_tokens = await self.counter.amessage_tokens("assistant", kept)
                if shared is not None and self.files is not None:
                    user_msg = await self.files.keep(conv, stored_before, user_msg, shared)
                said = StoredMessage("assistant", kept, reply_tokens, user=user_msg.user)
                record = TurnRecord(user_msg.user, placeholders.new if placeholders else {})
                dropped = await self.store.commit(turn, [user_msg, said], usage, record, fold=fold)
        except StoreUnavailable as exc:
            # The reply is already in the thread: an apology now would contradict it. The
            # exchange is simply not remembered (and the lock's lease frees the conversation).
            self.metrics.errors.labels("store").inc()
            log.error("reply posted but not stored: %s", exc)
            return
        if self.summarizer is not None and (dropped or ctx.pending):
            self.summarizer.schedule(conv, usage)
        if not keep:
            return
        log.info(
            "answered",
            extra={
                "prompt_tokens": prompt_used,
                "completion_tokens": completion_used,
                "history_messages": len(history),
                "stored_dropped": dropped,
                "finish_reason": completion.finish_reason,
                "usage_estimated": estimated,
            },
        )

    async def _fail(
        self, exc: ModelError, reply: ReplyTarget, stream: ReplyStream, partial: str
    ) -> None:
        if partial:
            await stream.finish(partial + "\n\n" + INTERRUPTED)
            return
        await self._say(reply, model_apology(exc.kind))

    async def _say(self, reply: ReplyTarget, text: str) -> None:
        try:
            await reply.send(text)
        except Exception as exc:
            self.metrics.errors.labels("post").inc()
            log.error("could not post to the thread: %s", type(exc).__name__)
