"""The running summary (HISTORY_SUMMARY): what trimming moves out of a history is folded, by the
model, into one summary kept with the thread and sent after the system prompt on every turn.

Folding runs after the reply is posted, never on the answer path. The store hands messages
over from the history to a pending list inside the turn's commit, and a fold takes the head of
that list under a lease (one replica per thread at a time) and writes the new summary and drops
what it folded in one step. A fold that fails, or a replica that dies mid-fold, leaves the
messages pending; the next turn of the thread, on any replica, schedules the fold again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bot.llm import LLMClient, ModelError
from bot.metrics import Metrics
from bot.store import FoldJob, Store, StoreUnavailable, Summary, Usage
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, prompt_budget

log = logging.getLogger("threadwise.summary")

# How the summary reaches the model on each turn: a system message right after the prompt,
# labelled so the model treats it as background rather than something to answer.
SUMMARY_LABEL = (
    "Summary of the earlier part of this conversation (those messages are no longer shown; "
    "use this as background, it is not a message to answer):\n"
)

FOLD_INSTRUCTIONS = (
    "You keep the running summary of a chat conversation between people and an assistant, so "
    "the assistant can carry on after older messages leave its context. Merge the earlier "
    "summary (if any) and the messages below into ONE updated summary.\n"
    "Keep: facts stated; decisions and agreements; names of people, teams, systems and places; "
    "numbers, amounts, dates, versions and identifiers; preferences and constraints people "
    "gave; tasks and who owns them; questions still open. Say who said what where it matters. "
    "Drop greetings, small talk and repetition. Never add anything that is not in the text.\n"
    "Write compact notes (short bullet points) in the conversation's language, at most "
    "{limit} tokens. Output only the summary."
)

# Folds one schedule may run back to back (each takes what fits one request).
FOLDS_PER_RUN = 20
# Tokens kept free in a fold request beyond our own count of it.
_MARGIN = 64


async def _discard(_: str) -> None:
    return None


def render(messages: list[StoredMessage], room: int) -> str:
    """The messages as transcript lines; a message longer than `room` tokens is cut to fit
    (by its own chars-per-token ratio: linear, no re-tokenizing)."""
    lines = []
    for m in messages:
        content = m.content
        if m.tokens > room > 0:
            content = content[: max(1, len(content) * room // m.tokens)] + " […]"
        speaker = f"{m.role} {m.name}" if m.name else m.role
        lines.append(f"[{speaker}]: {content}")
    return "\n".join(lines)


class Summarizer:
    """Schedules and runs folds; one instance per process."""

    def __init__(
        self,
        *,
        store: Store,
        llm: LLMClient,
        counter: TokenCounter,
        metrics: Metrics,
        max_tokens: int,
        token_limit: int,
        lease_seconds: float = 20.0,
    ) -> None:
        self.store = store
        self.llm = llm
        self.counter = counter
        self.metrics = metrics
        self.max_tokens = max_tokens
        self.token_limit = token_limit
        self.lease_seconds = lease_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def schedule(self, conversation: str, attribution: Usage) -> None:
        """Fold the conversation's pending messages soon, in the background.

        `attribution` names the workspace, channel and user the summary's tokens count for
        (its token fields are ignored). A fold already running here runs once more after.
        """
        if conversation in self._tasks:
            self._again.add(conversation)
            return
        task = asyncio.get_running_loop().create_task(self._run(conversation, attribution))
        self._tasks[conversation] = task
        task.add_done_callback(lambda _: self._tasks.pop(conversation, None))

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait for the folds running now (tests, shutdown); True when none is left."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks.values()), timeout=deadline - time.monotonic())
        return not self._tasks

    async def close(self) -> None:
        """Stop folding; what was not folded stays pending for the next turn (or replica)."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def _run(self, conversation: str, attribution: Usage) -> None:
        try:
            for _ in range(FOLDS_PER_RUN):
                self._again.discard(conversation)
                if not await self.fold_once(conversation, attribution):
                    if conversation not in self._again:
                        return
        except Exception:
            self.metrics.summaries.labels("failed").inc()
            log.exception("summary fold failed")

    async def fold_once(self, conversation: str, attribution: Usage) -> bool:
        """One fold; True when it folded something (more may be pending)."""
        instructions = FOLD_INSTRUCTIONS.format(limit=self.max_tokens)
        overhead = await self.counter.amessage_tokens("system", instructions) + _MARGIN
        room = prompt_budget(self.token_limit, self.max_tokens) - overhead
        try:
            # The old summary is read with the job; budget for the largest it may be.
            job = await self.store.begin_fold(
                conversation, room - self.max_tokens, self.lease_seconds
            )
        except StoreUnavailable as exc:
            self.metrics.summaries.labels("failed").inc()
            log.warning("summary fold not started: %s", exc)
            return False
        if job is None:
            return False
        try:
            return await self._fold(job, instructions, room, attribution)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.abandon_fold(job))
            raise

    async def _renew(self, job: FoldJob) -> None:
        """Keep the lease while the model works: a replica that dies mid-fold holds the
        thread's summary for at most one lease, not for the whole of a slow model call."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            with contextlib.suppress(StoreUnavailable):
                if not await self.store.renew_fold(job, self.lease_seconds):
                    return

    async def _fold(self, job: FoldJob, instructions: str, room: int, attribution: Usage) -> bool:
        earlier = job.summary.text if job.summary else "(none yet)"
        transcript = render(job.messages, room - self.max_tokens)
        request = [
            {"role": "system", "content": instructions},
            {
                "role": "user",
                "content": f"Earlier summary:\n{earlier}\n\n"
                f"Messages to fold in, oldest first:\n{transcript}",
            },
        ]
        renewal = asyncio.get_running_loop().create_task(self._renew(job))
        try:
            completion = await self.llm.stream(request, _discard, max_tokens=self.max_tokens)
        except ModelError as exc:
            self.metrics.summaries.labels("failed").inc()
            log.warning("summary fold failed: model %s", exc.kind)
            await self.store.abandon_fold(job)
            return False
        finally:
            renewal.cancel()
        text = completion.text.strip()
        if not text:
            self.metrics.summaries.labels("failed").inc()
            log.warning("summary fold failed: the model returned an empty summary")
            await self.store.abandon_fold(job)
            return False
        tokens = await self.counter.amessage_tokens("system", SUMMARY_LABEL + text)
        covered = (job.summary.covered if job.summary else 0) + len(job.messages)
        summary = Summary(text, tokens, covered, time.time())
        if not await self.store.finish_fold(job, summary):
            self.metrics.summaries.labels("discarded").inc()
            log.info("summary fold discarded: the conversation was reset or the lease lost")
            return False
        self.metrics.summaries.labels("folded").inc()
        prompt_used = completion.prompt_tokens
        estimated = prompt_used is None or completion.completion_tokens is None
        if prompt_used is None:
            prompt_used = sum(
                [await self.counter.amessage_tokens(m["role"], m["content"]) for m in request]
            )
        completion_used = completion.completion_tokens
        if completion_used is None:
            completion_used = await self.counter.amessage_tokens("assistant", text)
        self.metrics.tokens.labels("summary_prompt").inc(prompt_used)
        self.metrics.tokens.labels("summary_completion").inc(completion_used)
        with contextlib.suppress(StoreUnavailable):
            await self.store.add_usage(
                Usage(
                    workspace=attribution.workspace,
                    channel=attribution.channel,
                    user=attribution.user,
                    prompt_tokens=prompt_used,
                    completion_tokens=completion_used,
                    replies=0,
                    estimated=estimated,
                )
            )
        log.info(
            "summary folded",
            extra={"folded_messages": len(job.messages), "summary_tokens": tokens},
        )
        return True
