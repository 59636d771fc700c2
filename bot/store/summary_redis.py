"""The Redis side of the running summary (HISTORY_SUMMARY), mixed into `RedisStore`.

Keys (one conversation's hash tag, so each script touches one Cluster slot):

    P{<conv>}:sp   list    messages moved out of the history, waiting to be folded, oldest first
    P{<conv>}:s    string  the summary: "tokens\\tcovered\\tat\\ttext"
    P{<conv>}:sl   string  the fold lease: the token of the replica folding now

The hand-over from history to pending happens inside the commit script (`lua/append.lua`);
folding reads the head of `:sp` under the lease and, in `lua/fold_finish.lua`, writes the
summary and drops exactly what it read, or nothing when the lease was lost.
"""

from __future__ import annotations

import uuid

from bot.store.codec import FoldJob, Summary, decode_message

SUMMARY_SCRIPTS: dict[str, tuple[str, ...]] = {
    "fold_begin": ("fold_begin",),
    "fold_finish": ("fold_finish",),
    "fold_abandon": ("fold_abandon",),
    "fold_renew": ("fold_renew",),
}


class RedisSummaries:
    """`SummaryStore` for `RedisStore`: uses its client, keys, guard and registered scripts."""

    def _summary_keys(self, conversation: str) -> list[str]:
        c = self.keys.conversation  # type: ignore[attr-defined]
        return [c(conversation, "sp"), c(conversation, "s"), c(conversation, "sl")]

    async def summary(self, conversation: str) -> Summary | None:
        key = self.keys.conversation(conversation, "s")  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            return Summary.decode(await self.r.get(key))  # type: ignore[attr-defined]

    async def begin_fold(
        self, conversation: str, budget: int, lease_seconds: float
    ) -> FoldJob | None:
        token = uuid.uuid4().hex
        script = self._scripts["fold_begin"]  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            got = await script(
                keys=self._summary_keys(conversation),
                args=[token, int(lease_seconds * 1000), max(budget, 1)],
            )
        if not got or int(got[0]) != 1:
            return None
        messages = [decode_message(x) for x in got[2:]]
        return FoldJob(conversation, token, Summary.decode(got[1]), messages)

    async def finish_fold(self, job: FoldJob, summary: Summary) -> bool:
        script = self._scripts["fold_finish"]  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            done = await script(
                keys=self._summary_keys(job.conversation),
                args=[job.token, len(job.messages), summary.encode(), self.history_ttl],  # type: ignore[attr-defined]
            )
        return bool(done)

    async def abandon_fold(self, job: FoldJob) -> None:
        script = self._scripts["fold_abandon"]  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            await script(keys=self._summary_keys(job.conversation)[2:], args=[job.token])

    async def renew_fold(self, job: FoldJob, lease_seconds: float) -> bool:
        script = self._scripts["fold_renew"]  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            got = await script(
                keys=self._summary_keys(job.conversation)[2:],
                args=[job.token, int(lease_seconds * 1000)],
            )
        return bool(got)
