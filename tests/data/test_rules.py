"""The plain-turn fast path of rules.check_messages gives exactly what the full checks give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_hub.data import rules

_ROLES = st.sampled_from(["system", "user", "assistant", "tool", "function", "bot", None])
_CONTENT = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "\n\t", "ok"]), st.none(), st.integers())
_CALL = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
_MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": _ROLES, "content": _CONTENT}),
    st.fixed_dictionaries({"role": _ROLES}),
    st.fixed_dictionaries({"content": _CONTENT}),
    st.fixed_dictionaries({"role": _ROLES, "content": _CONTENT, "tool_call_id": st.sampled_from(["a", "b"])}),
    st.just({"role": "assistant", "content": None, "tool_calls": [_CALL]}),
    st.just({"role": "tool", "content": "sunny", "tool_call_id": "a"}),
    st.just("not a message"),
)


def _named(message: Any) -> Any:
    """The same message with a valid `name`: it no longer has exactly two keys, so the full checks run."""
    return {**message, "name": "n"} if isinstance(message, dict) else message


@settings(max_examples=400, deadline=None)
@given(st.lists(_MESSAGE, max_size=6))
def test_plain_turn_fast_path_equals_the_full_checks(messages: list[Any]) -> None:
    assert rules.check_messages(messages) == rules.check_messages([_named(m) for m in messages])
