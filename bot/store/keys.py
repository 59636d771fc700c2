"""The Redis key layout, and the escaping that keeps it injective.

P = REDIS_KEY_PREFIX; `{…}` is a Cluster hash tag, so one conversation's keys and its scripts
live on one shard:

    P{<conv>}:h      list   history, oldest first; items "tokens\\trole\\tname\\tcontent"
    P{<conv>}:t      string running token total of :h (so trimming never rescans the list)
    P{<conv>}:a      string subscribed: the bot answers this thread (follow-ups without a mention)
    P{<conv>}:o:<id> string exactly-once marker of one post
    P{<conv>}:q, :l  list + hash  FIFO lock queue and the lease deadline of each waiter
    P{<conv>}:sp, :s, :sl  list, strings  running summary: pending messages, the summary, the
                     fold lease (HISTORY_SUMMARY; `summary_redis.py`)
    P{<conv>}:r      hash   redaction placeholders: hash of a redacted value → `[EMAIL_1]`
    P{~u:<user>}:c   zset   conversations a user has messages in (data requests), by last use
    P{prompts}:<scope>        string  the system prompt of a scope
    P{prompts}:audit:<scope>  list    newest-first JSON audit records
    P{prompts}:audited        set     scopes that have an audit list (data requests)
    P{prompts}:audit-data     list    newest-first JSON records of data exports and erasures
    P{usage}:<YYYY-MM-DD>     hash    token and reply counters per workspace/channel/user
    P{feedback}:…             votes, their log and day counters (bot/store/feedback_redis.py)
    P{usage}:budgets          hash    daily token budgets set from the chat, per dimension
    P{usage}:budgets:audit    list    newest-first JSON audit records of budget changes
    P{usage}:rate:<user>:<minute>  string  messages of a user in one minute (rate limit)
    Pcache:{<key>}            string  small adapter cache (user names)

Every id is escaped before it goes into a key (`escape`, used by every key builder), so no
conversation, post, scope, day or cache key can produce another one's key or break out of the
`{…}` hash tag. Only `%`, `{` and `}` are percent-encoded: a hash tag ends at its first `}`,
so with none left inside, the tag is exactly the escaped conversation and everything after it
is that conversation's; `%` is encoded so the escaping can be undone (it is injective). `:`
and `|` are left alone: the tag is delimited by braces, not colons, and what follows it has a
fixed shape (`:h`, `:o:<id>`, …), so colons cannot shift a boundary — and the conversation
keys of Teams (`teams:<tenant>:19:…;messageid=…`) and of the Bot Framework Emulator
(`…|livechat`) stay exactly what they were, so stored history, prompts and usage keep working.
Two words would still be ambiguous and get their first letter encoded: a conversation named
`prompts` or `usage` (the shared tags) or starting `~` (the user indexes), and a scope starting
`audit` (the audit lists and the set of audited scopes). Real
ids never take either form, so no existing key changes. (The usage hash fields
`<w|c|u>|<id>|<counter>` need no escaping: the kind is the first letter and the counter the
last segment, so the id between them is recovered whatever `|` it holds.)
"""

from __future__ import annotations

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
_SHARED_TAGS = frozenset({"prompts", "usage", "feedback"})


def escape(value: str) -> str:
    """An id as it goes into a key: injective, and unchanged for every id without `%{}`."""
    return value.translate(_ESCAPES)


def _escape_first(value: str) -> str:
    """Percent-encode the first character, to step an escaped id off a reserved word."""
    return f"%{ord(value[0]):02X}{value[1:]}"


class Keys:
    """The keys under one prefix; every id passes through `escape` here, and nowhere else
    builds a key."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            # The prefix would hold the hash tag of every key: all of them on one shard.
            raise ValueError(f"REDIS_KEY_PREFIX must not contain {{ or }}: {prefix!r}")
        self.prefix = prefix

    def _tag(self, conversation: str) -> str:
        if not conversation:
            # `{}` is no hash tag at all in Redis Cluster: the keys would scatter over shards.
            raise ValueError("empty conversation key")
        tag = escape(conversation)
        return _escape_first(tag) if tag in _SHARED_TAGS or tag.startswith("~") else tag

    def conversation(self, conversation: str, part: str) -> str:
        """One of a conversation's own keys: `part` is `h`, `t`, `a`, `q`, `l`, `sp`, `s`, `sl`."""
        return f"{self.prefix}{{{self._tag(conversation)}}}:{part}"

    def once(self, conversation: str, once_id: str | None) -> str:
        """The exactly-once marker of one post (`:o` alone when there is no post id)."""
        return self.conversation(conversation, f"o:{escape(once_id)}" if once_id else "o")

    def prompt(self, scope: str) -> str:
        key = escape(scope)
        reserved = key.startswith("audit")
        return f"{self.prefix}{{prompts}}:{_escape_first(key) if reserved else key}"

    def audit(self, scope: str) -> str:
        return f"{self.prefix}{{prompts}}:audit:{escape(scope)}"

    def usage(self, day: str) -> str:
        return f"{self.prefix}{{usage}}:{escape(day)}"

    def cache(self, key: str) -> str:
        return f"{self.prefix}cache:{{{escape(key)}}}"

    def feedback_vote(self, vote_id: str) -> str:
        return f"{self.prefix}{{feedback}}:v:{escape(vote_id)}"

    def feedback_log(self) -> str:
        return f"{self.prefix}{{feedback}}:log"

    def feedback_day(self, day: str) -> str:
        return f"{self.prefix}{{feedback}}:c:{escape(day)}"

    def audited(self) -> str:
        return f"{self.prefix}{{prompts}}:audited"

    def data_audit(self) -> str:
        return f"{self.prefix}{{prompts}}:audit-data"

    def budgets(self) -> str:
        return f"{self.prefix}{{usage}}:budgets"

    def budget_audit(self) -> str:
        return f"{self.prefix}{{usage}}:budgets:audit"

    def rate(self, user: str, minute: int) -> str:
        return f"{self.prefix}{{usage}}:rate:{escape(user)}:{minute}"

    def user_index(self, user: str) -> str:
        return f"{self.prefix}{{~u:{escape(user)}}}:c"
