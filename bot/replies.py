"""What the bot says when it does not answer from the model: apologies, notices, refusals.

Kept in one place so that the wording users see is reviewed together and tests can name it.
"""

from __future__ import annotations

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
