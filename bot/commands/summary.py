"""`!summary`: the thread's running summary (HISTORY_SUMMARY), for anyone in the conversation.

It holds only what was said in this conversation, so whoever can read the thread may read it.
"""

from __future__ import annotations

from bot.commands.row import Context

OFF = (
    "I don't keep running summaries here (HISTORY_SUMMARY is off): when a conversation "
    "outgrows my memory, I forget its oldest messages."
)
NONE_YET = (
    "There is no summary of this conversation yet: everything said so far still fits in my memory."
)


async def cmd_summary(ctx: Context) -> str:
    summary = await ctx.store.summary(ctx.message.conversation_key)
    if summary is None:
        return NONE_YET if ctx.store.summaries else OFF
    plural = "" if summary.covered == 1 else "s"
    return (
        f"What I remember of the earlier part of this conversation ({summary.covered} "
        f"message{plural} folded in):\n\n{summary.text}"
    )
