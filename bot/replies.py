"""What the bot says when it does not answer from the model: apologies, notices, refusals.

Kept in one place so that the wording users see is reviewed together and tests can name it.
"""

from __future__ import annotations

APOLOGY_MODEL = (
    "Sorry — I couldn't get an answer from the language model just now. "
    "Please try again in a minute."
)
APOLOGY_TIMEOUT = "Sorry — the language model took too long to answer. Please try again."
# One line per kind of model failure (bot/model_errors.py); `model_apology` picks it.
APOLOGY_UNREACHABLE = (
    "Sorry — I can't reach the language model right now (the connection failed). "
    "Please try again in a few minutes."
)
APOLOGY_RATE_LIMITED = (
    "Sorry — the language model is over its rate limit and I couldn't get a turn in time. "
    "Please try again in a few minutes."
)
APOLOGY_SERVER_ERROR = (
    "Sorry — the language model service had an error and didn't answer. Please try again in "
    "a minute."
)
APOLOGY_AUTH = (
    "Sorry — the language model refused my credentials. An operator needs to check the key "
    "or identity (`threadwise doctor`)."
)
APOLOGY_NO_CREDENTIALS = (
    "Sorry — I have no credentials for the language model (no API key and no Microsoft Entra "
    "ID identity). An operator needs to set one up (`threadwise doctor`)."
)
APOLOGY_NOT_FOUND = (
    "Sorry — the language model deployment I'm configured for doesn't exist. An operator needs "
    "to check AZURE_OPENAI_DEPLOYMENT (`threadwise doctor`)."
)
APOLOGY_CONTEXT = (
    "Sorry — this conversation no longer fits the language model's context, even trimmed. "
    "Please send a shorter message, or `!reset` to start the thread's memory afresh."
)
APOLOGY_EMPTY_STREAM = (
    "Sorry — the language model ended its reply without a word and without saying why. "
    "Please try again."
)
APOLOGY_BAD_REQUEST = (
    "Sorry — the language model rejected the request. If it keeps happening, an operator "
    "should look at the service's log."
)
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
DEADLINE = "_(The reply took too long and was stopped here, at LLM_REPLY_DEADLINE_SECONDS.)_"
EMPTY_REPLY = "_(The model returned an empty reply.)_"
INTERRUPTED = "_(The reply was interrupted — sorry. Please ask again; this exchange was not kept.)_"
EMPTY_MENTION = "Hi! Ask me anything in this thread, or type `!help` for commands."
BUSY = "I'm busy with earlier messages in this conversation — please try again in a moment."


_BY_KIND = {
    "unreachable": APOLOGY_UNREACHABLE,
    "timeout": APOLOGY_TIMEOUT,
    "rate_limited": APOLOGY_RATE_LIMITED,
    "server_error": APOLOGY_SERVER_ERROR,
    "auth": APOLOGY_AUTH,
    "credentials_unavailable": APOLOGY_NO_CREDENTIALS,
    "not_found": APOLOGY_NOT_FOUND,
    "content_filter": FILTERED_PROMPT,
    "context_length": APOLOGY_CONTEXT,
    "empty_stream": APOLOGY_EMPTY_STREAM,
    "bad_request": APOLOGY_BAD_REQUEST,
}


def model_apology(kind: str) -> str:
    """What the user reads when the model call failed with `kind` before any text."""
    return _BY_KIND.get(kind, APOLOGY_MODEL)
