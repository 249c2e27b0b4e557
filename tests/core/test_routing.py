"""The exchange-type routers on their own, with strings as destinations."""

from __future__ import annotations

import functools
import re

from hypothesis import given
from hypothesis import strategies as st

from amqplike.core.routing import (
    DirectRouter,
    FanoutRouter,
    HeadersRouter,
    TopicRouter,
    freeze_arguments,
    headers_match,
    topic_words,
)


def topic(*patterns: str) -> TopicRouter[str]:
    router: TopicRouter[str] = TopicRouter()
    for p in patterns:
        router.add(p, (), p)
    return router


def matched(router: TopicRouter[str], key: str) -> set[str]:
    return set(router.match(key, None))


def test_direct_routes_equal_key_only() -> None:
    """A direct router returns the destinations bound with exactly the routing key."""
    r: DirectRouter[str] = DirectRouter()
    r.add("a", (), "q1")
    r.add("b", (), "q2")
    assert set(r.match("a", None)) == {"q1"}
    assert set(r.match("c", None)) == set()


def test_direct_destination_bound_twice_returned_once_and_removed_by_refcount() -> None:
    """Two bindings of one destination give it once; it stays until both are removed."""
    r: DirectRouter[str] = DirectRouter()
    r.add("a", (), "q")
    r.add("a", (("x", 1),), "q")
    assert list(r.match("a", None)) == ["q"]
    r.remove("a", (), "q")
    assert list(r.match("a", None)) == ["q"]
    r.remove("a", (("x", 1),), "q")
    assert list(r.match("a", None)) == []


def test_fanout_ignores_key() -> None:
    """A fanout router returns every destination whatever the key."""
    r: FanoutRouter[str] = FanoutRouter()
    r.add("k1", (), "q1")
    r.add("", (), "q2")
    assert set(r.match("anything", None)) == {"q1", "q2"}


def test_topic_words_of_empty_and_dotted_keys() -> None:
    """The empty key has no words; empty words between dots are kept (RabbitMQ)."""
    assert topic_words("") == []
    assert topic_words("a..b") == ["a", "", "b"]
    assert topic_words(".") == ["", ""]


def test_topic_star_matches_exactly_one_word() -> None:
    """``*`` stands for one word, never zero or two."""
    r = topic("a.*")
    assert matched(r, "a.b") == {"a.*"}
    assert matched(r, "a") == set()
    assert matched(r, "a.b.c") == set()


def test_topic_hash_matches_zero_or_more_words() -> None:
    """``#`` stands for zero or more words, at the end, start or middle."""
    r = topic("a.#", "#.z", "a.#.z")
    assert matched(r, "a") == {"a.#"}
    assert matched(r, "a.b.c") == {"a.#"}
    assert matched(r, "z") == {"#.z"}
    assert matched(r, "a.z") == {"a.#", "#.z", "a.#.z"}
    assert matched(r, "a.b.c.z") == {"a.#", "#.z", "a.#.z"}


def test_topic_lone_hash_matches_everything_including_empty_key() -> None:
    """A ``#`` binding gets every message, even one with the empty routing key."""
    r = topic("#")
    assert matched(r, "") == {"#"}
    assert matched(r, "a.b") == {"#"}


def test_topic_empty_binding_matches_only_empty_key() -> None:
    """The empty binding key is zero words and so matches only the empty routing key."""
    r = topic("")
    assert matched(r, "") == {""}
    assert matched(r, "a") == set()


def test_topic_empty_words_match_star_and_literal_empty() -> None:
    """In ``a..b`` the middle empty word is a word: ``*`` matches it, so does ``a..b``."""
    r = topic("a.*.b", "a..b", "a.b")
    assert matched(r, "a..b") == {"a.*.b", "a..b"}


def test_topic_multiple_hashes() -> None:
    """Several ``#`` in one pattern each take zero or more words."""
    r = topic("#.a.#", "#.#")
    assert matched(r, "a") == {"#.a.#", "#.#"}
    assert matched(r, "x.a.y.z") == {"#.a.#", "#.#"}
    assert matched(r, "x.y") == {"#.#"}
    assert matched(r, "") == {"#.#"}


def test_topic_many_hashes_long_key_is_fast() -> None:
    """Patterns full of ``#`` stay polynomial: visited (node, position) pairs are not redone."""
    r = topic(".".join(["#"] * 12) + ".end")
    key = ".".join(["w"] * 200) + ".end"
    assert matched(r, key) == {".".join(["#"] * 12) + ".end"}
    assert matched(r, ".".join(["w"] * 200)) == set()


def test_topic_literal_wildcard_characters_in_routing_key() -> None:
    """A routing key word ``*`` is matched by a ``*`` binding and not double counted."""
    r = topic("*", "a")
    assert list(r.match("*", None)) == ["*"]


def test_topic_remove_prunes_and_keeps_other_bindings() -> None:
    """Removing one binding leaves bindings that share its trie prefix working."""
    r = topic("a.b.c", "a.b")
    r.remove("a.b.c", (), "a.b.c")
    assert matched(r, "a.b.c") == set()
    assert matched(r, "a.b") == {"a.b"}
    r.remove("a.b", (), "a.b")
    assert matched(r, "a.b") == set()
    assert r._root.children == {}


def test_topic_remove_unknown_binding_is_harmless() -> None:
    """Removing a binding never added changes nothing."""
    r = topic("a.b")
    r.remove("x.y", (), "a.b")
    assert matched(r, "a.b") == {"a.b"}


@functools.cache
def _reference(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """The topic rule stated directly, as a recursive definition."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _reference(rest, key[1:])


_pattern_words = st.lists(st.sampled_from(["a", "b", "", "*", "#"]), max_size=6)
_key_words = st.lists(st.sampled_from(["a", "b", "", "c"]), max_size=7)


@given(patterns=st.lists(_pattern_words, min_size=1, max_size=8), key=_key_words)
def test_topic_trie_agrees_with_reference_matcher(
    patterns: list[list[str]], key: list[str]
) -> None:
    """For random patterns and keys, the trie returns exactly the patterns the
    recursive definition says match."""
    names = [".".join(p) for p in patterns]
    router = topic(*names)
    key_str = ".".join(key)
    expected = {
        n for n in names if _reference(tuple(topic_words(n)), tuple(topic_words(key_str)))
    }
    assert matched(router, key_str) == expected


@given(pattern=_pattern_words.filter(lambda p: "#" not in p), key=_key_words)
def test_topic_reference_agrees_with_regex_without_hash(pattern: list[str], key: list[str]) -> None:
    """Sanity check of the reference itself against a regex for ``#``-free patterns."""
    p, k = ".".join(pattern), ".".join(key)
    regex = re.compile(
        r"\.".join(r"[^.]*" if w == "*" else re.escape(w) for w in topic_words(p)) + r"\Z"
    )
    by_regex = bool(regex.match(k)) if topic_words(p) else k == ""
    if topic_words(p) and not topic_words(k):
        # The regex cannot tell the empty key (no words) from one empty word.
        by_regex = False
    assert _reference(tuple(topic_words(p)), tuple(topic_words(k))) == by_regex


def hargs(**kw: object) -> tuple[tuple[str, object], ...]:
    return freeze_arguments({k.replace("_", "-"): v for k, v in kw.items()})


def test_headers_all_requires_every_binding_header() -> None:
    """``x-match=all`` (the default) needs every non-``x-`` binding header, with equal value."""
    a = hargs(format="pdf", type="report")
    assert headers_match(a, {"format": "pdf", "type": "report", "extra": 1})
    assert not headers_match(a, {"format": "pdf"})
    assert not headers_match(a, {"format": "pdf", "type": "log"})
    assert not headers_match(a, None)


def test_headers_any_requires_one_binding_header() -> None:
    """``x-match=any`` needs one matching header."""
    a = hargs(x_match="any", format="pdf", type="report")
    assert headers_match(a, {"type": "report"})
    assert not headers_match(a, {"type": "log"})
    assert not headers_match(a, None)


def test_headers_x_keys_ignored() -> None:
    """Binding keys starting with ``x-`` take no part in matching."""
    a = hargs(x_match="all", x_custom="v", format="pdf")
    assert headers_match(a, {"format": "pdf"})


def test_headers_with_x_variants_match_x_keys() -> None:
    """``all-with-x`` also requires the ``x-`` binding keys (RabbitMQ 3.10)."""
    a = hargs(x_match="all-with-x", x_custom="v")
    assert headers_match(a, {"x-custom": "v"})
    assert not headers_match(a, {})
    b = hargs(x_match="any-with-x", x_custom="v", format="pdf")
    assert headers_match(b, {"x-custom": "v"})


def test_headers_empty_binding_all_matches_everything_any_nothing() -> None:
    """A binding with nothing to match matches all with ``all``, nothing with ``any``."""
    assert headers_match((), None)
    assert headers_match(hargs(x_match="all"), {"a": 1})
    assert not headers_match(hargs(x_match="any"), {"a": 1})


def test_headers_void_value_means_presence() -> None:
    """A binding value of None only requires the header to be present."""
    a = freeze_arguments({"flag": None})
    assert headers_match(a, {"flag": 42})
    assert not headers_match(a, {"other": 42})


def test_headers_nested_values_compare_by_content() -> None:
    """Table and array header values are compared by content."""
    a = freeze_arguments({"t": {"k": [1, 2]}})
    assert headers_match(a, {"t": {"k": [1, 2]}})
    assert not headers_match(a, {"t": {"k": [2, 1]}})


def test_headers_router_returns_each_destination_once() -> None:
    """Two matching bindings to one destination give it once."""
    r: HeadersRouter[str] = HeadersRouter()
    r.add("", hargs(a=1), "q")
    r.add("", hargs(b=2), "q")
    r.add("", hargs(c=3), "other")
    assert list(r.match("", {"a": 1, "b": 2})) == ["q"]
