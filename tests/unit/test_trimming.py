"""docs/spec.md §3 trimming rules as properties over random histories."""

import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_newest, fit_prompt

COUNTER = TokenCounter("o200k_base")
ENC = tiktoken.get_encoding("o200k_base")


def independent_count(messages: list[dict[str, str]]) -> int:
    """The cookbook loop, written separately from bot.tokens."""
    total = 3
    for m in messages:
        total += 3
        for key, value in m.items():
            total += len(ENC.encode(value, disallowed_special=()))
            if key == "name":
                total += 1
    return total


def stored(role: str, content: str, name: str | None = None) -> StoredMessage:
    return StoredMessage(role, content, COUNTER.message_tokens(role, content, name), name)


texts = st.text(min_size=0, max_size=80)
names = st.one_of(st.none(), st.sampled_from(["Alice", "Bob_2", "c-d"]))


@st.composite
def histories(draw):
    n_turns = draw(st.integers(0, 25))
    out = []
    # Stored histories always begin with a user message (the store keeps it so); a stray
    # assistant message at the front tests that the prompt never starts with one.
    if draw(st.booleans()):
        out.append(stored("assistant", draw(texts)))
    for _ in range(n_turns):
        out.append(stored("user", draw(texts), draw(names)))
        out.append(stored("assistant", draw(texts)))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    system=texts,
    new=st.text(min_size=1, max_size=200),
    new_name=names,
    limit=st.integers(20, 1500),
    reserve=st.integers(1, 400),
)
def test_prompt_keeps_every_rule_of_spec_section_3(history, system, new, new_name, limit, reserve):
    sys_msg = stored("system", system)
    new_msg = stored("user", new, new_name)
    prompt = fit_prompt(sys_msg, history, new_msg, limit, reserve)
    wire = lambda ms: [m.to_openai() for m in ms]  # noqa: E731
    if prompt is None:
        # Refused only when the new message cannot fit even with no history at all.
        assert independent_count(wire([sys_msg, new_msg])) + reserve > limit
        return
    # the limit is kept, counted independently
    assert independent_count(wire(prompt)) + reserve <= limit
    # system first, the new message last and whole
    assert prompt[0] == sys_msg and prompt[-1] == new_msg
    kept = prompt[1:-1]
    # the kept history is the newest part of the history, in order
    assert kept == history[len(history) - len(kept) :]
    # first message after the system prompt is a user message
    assert prompt[1].role == "user"
    # maximal: one more older message (with any assistant run before it) would break the limit
    start = len(history) - len(kept)
    if start > 0:
        older = history[:start]
        j = len(older) - 1
        while j >= 0 and older[j].role != "user":
            j -= 1
        if j >= 0:
            bigger = [sys_msg, *older[j:], *kept, new_msg]
            assert independent_count(wire(bigger)) + reserve > limit


def test_fit_newest_drops_whole_messages_never_parts():
    h = [stored("user", "a " * 50), stored("assistant", "b " * 50), stored("user", "c")]
    out = fit_newest(h, h[-1].tokens + 1)
    assert out == [h[-1]]
    assert all(m.content in {x.content for x in h} for m in out)
