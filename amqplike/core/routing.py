"""Routing tables for the four AMQP exchange types.

Each router maps a message's routing key (and headers) to the destinations
bound to its exchange.  Routers are generic over the destination type, so
they know nothing of queues or exchanges and are tested with plain strings.

A destination bound several times (different keys or arguments) is returned
once: AMQP 0-9-1 (3.1.3.3) says a queue gets one copy of a message however
many of its bindings match.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Any, Final, Generic, Protocol, TypeVar

from attrs import define, field

D = TypeVar("D", bound=Hashable)

#: Arguments frozen into a hashable, order-independent value.
FrozenArguments = tuple[tuple[str, Any], ...]

_NOTHING: Final[tuple[()]] = ()


def freeze(value: Any) -> Any:
    """Turn a table value into a hashable one (dicts to sorted item tuples, lists to tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def freeze_arguments(arguments: Mapping[str, Any] | None) -> FrozenArguments:
    """Freeze a binding's argument table; equal tables give equal results."""
    if not arguments:
        return ()
    return tuple(sorted((k, freeze(v)) for k, v in arguments.items()))


def topic_words(key: str) -> list[str]:
    """Split a topic routing or binding key into words.

    As RabbitMQ does, the empty key has no words and empty words are kept:
    ``"a..b"`` is ``["a", "", "b"]``.
    """
    return key.split(".") if key else []


class Router(Protocol[D]):
    """The routing table of one exchange."""

    def add(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Record one binding (callers never add the same binding twice)."""

    def remove(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Forget one binding previously added."""

    def match(self, routing_key: str, headers: Mapping[str, Any] | None) -> Collection[D]:
        """The destinations a message with this key and headers goes to, each once."""


def _inc(counts: dict[D, int], destination: D) -> None:
    counts[destination] = counts.get(destination, 0) + 1


def _dec(counts: dict[D, int], destination: D) -> None:
    n = counts.get(destination, 0) - 1
    if n > 0:
        counts[destination] = n
    else:
        counts.pop(destination, None)


@define(eq=False, slots=True)
class DirectRouter(Generic[D]):
    """``direct``: the routing key must equal the binding key (AMQP 0-9-1, 3.1.3.1).

    A table from key to destinations, each with a count of the bindings
    (differing only in arguments) that put it there.
    """

    _table: dict[str, dict[D, int]] = field(factory=dict)

    def add(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Record one binding."""
        _inc(self._table.setdefault(routing_key, {}), destination)

    def remove(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Forget one binding."""
        counts = self._table.get(routing_key)
        if counts is not None:
            _dec(counts, destination)
            if not counts:
                del self._table[routing_key]

    def match(self, routing_key: str, headers: Mapping[str, Any] | None) -> Collection[D]:
        """The destinations bound with exactly this key."""
        return self._table.get(routing_key, _NOTHING)


@define(eq=False, slots=True)
class FanoutRouter(Generic[D]):
    """``fanout``: every destination gets every message, keys are ignored."""

    _counts: dict[D, int] = field(factory=dict)

    def add(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Record one binding."""
        _inc(self._counts, destination)

    def remove(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Forget one binding."""
        _dec(self._counts, destination)

    def match(self, routing_key: str, headers: Mapping[str, Any] | None) -> Collection[D]:
        """All bound destinations."""
        return self._counts


@define(eq=False, slots=True)
class _TopicNode(Generic[D]):
    """One word position in the topic trie; ``*`` and ``#`` are ordinary child keys."""

    children: dict[str, _TopicNode[D]] = field(factory=dict)
    destinations: dict[D, int] = field(factory=dict)


@define(eq=False, slots=True)
class TopicRouter(Generic[D]):
    """``topic``: dot-separated words, ``*`` matches one word, ``#`` zero or more.

    Binding keys are stored in a trie of words, so a publish walks the trie
    once instead of testing a pattern per binding.  ``#`` is handled by trying
    every remaining word position below it; the (node, position) pairs already
    visited are remembered, which keeps patterns like ``#.#.#`` linear in
    trie size times key length instead of exponential.
    """

    _root: _TopicNode[D] = field(factory=_TopicNode)

    def add(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Record one binding."""
        node = self._root
        for word in topic_words(routing_key):
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _TopicNode()
            node = child
        _inc(node.destinations, destination)

    def remove(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Forget one binding, pruning trie nodes left empty."""
        path: list[tuple[_TopicNode[D], str]] = []
        node = self._root
        for word in topic_words(routing_key):
            child = node.children.get(word)
            if child is None:
                return
            path.append((node, word))
            node = child
        _dec(node.destinations, destination)
        for parent, word in reversed(path):
            if node.destinations or node.children:
                break
            del parent.children[word]
            node = parent

    def match(self, routing_key: str, headers: Mapping[str, Any] | None) -> Collection[D]:
        """The destinations whose binding pattern matches the key."""
        words = topic_words(routing_key)
        n = len(words)
        out: dict[D, None] = {}
        seen: set[tuple[_TopicNode[D], int]] = set()
        stack: list[tuple[_TopicNode[D], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            hash_child = children.get("#")
            if hash_child is not None:
                # '#' swallows zero or more words: continue below it at every position.
                for j in range(i, n + 1):
                    state = (hash_child, j)
                    if state not in seen:
                        seen.add(state)
                        stack.append(state)
            if i == n:
                for destination in node.destinations:
                    out[destination] = None
                continue
            word = words[i]
            if word != "*" and word != "#":
                # A literal '*' or '#' in a routing key is already covered by the
                # wildcard children; looking it up again would only repeat work.
                child = children.get(word)
                if child is not None:
                    stack.append((child, i + 1))
            star = children.get("*")
            if star is not None:
                stack.append((star, i + 1))
        return out


#: ``x-match`` values; the ``-with-x`` forms (RabbitMQ 3.10) also match ``x-`` keys.
_X_MATCH_KINDS: Final = {
    "all": (True, False),
    "any": (False, False),
    "all-with-x": (True, True),
    "any-with-x": (False, True),
}


def headers_match(arguments: FrozenArguments, headers: Mapping[str, Any] | None) -> bool:
    """RabbitMQ's ``headers`` exchange rule for one binding.

    ``x-match`` is ``all`` (default) or ``any``; binding keys starting with
    ``x-`` are not matched (unless ``all-with-x``/``any-with-x``); a binding
    value of ``None`` (AMQP "void") only requires the header to be present.
    With ``all`` a binding with nothing to match matches every message; with
    ``any`` it matches none (``rabbit_exchange_type_headers:headers_match``).
    """
    kind = "all"
    for key, value in arguments:
        if key == "x-match":
            kind = value if isinstance(value, str) else "all"
            break
    match_all, with_x = _X_MATCH_KINDS.get(kind, (True, False))
    headers = headers or {}
    matched_any = False
    for key, value in arguments:
        if key == "x-match" or (not with_x and key.startswith("x-")):
            continue
        if key in headers and (value is None or freeze(headers[key]) == value):
            if not match_all:
                return True
            matched_any = True
        elif match_all:
            return False
    return match_all or matched_any


@define(eq=False, slots=True)
class HeadersRouter(Generic[D]):
    """``headers``: bindings match on message headers, routing keys are ignored.

    Every binding is tested on each publish, as in RabbitMQ; headers
    exchanges rarely have many bindings.
    """

    _bindings: dict[tuple[FrozenArguments, D], int] = field(factory=dict)

    def add(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Record one binding."""
        _inc(self._bindings, (arguments, destination))

    def remove(self, routing_key: str, arguments: FrozenArguments, destination: D) -> None:
        """Forget one binding."""
        _dec(self._bindings, (arguments, destination))

    def match(self, routing_key: str, headers: Mapping[str, Any] | None) -> Collection[D]:
        """The destinations with at least one binding matching the headers."""
        out: dict[D, None] = {}
        for arguments, destination in self._bindings:
            if destination not in out and headers_match(arguments, headers):
                out[destination] = None
        return out


#: Exchange type name to router class.  ``amq.match`` is a headers exchange.
ROUTER_TYPES: Final[Mapping[str, type[Any]]] = {
    "direct": DirectRouter,
    "fanout": FanoutRouter,
    "topic": TopicRouter,
    "headers": HeadersRouter,
}
