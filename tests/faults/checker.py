"""The lost / duplicated / unexpected checker of RELIABILITY.md (Jepsen's vocabulary)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from attrs import frozen


@frozen
class Verdict:
    """What a drain found compared with what publishers were told."""

    lost: frozenset[str]
    duplicated: frozenset[str]
    unexpected: frozenset[str]
    confirmed: int
    received: int

    def summary(self) -> str:
        """One line for assertion messages and logs."""
        return (
            f"confirmed={self.confirmed} received={self.received} lost={len(self.lost)} "
            f"duplicated={len(self.duplicated)} unexpected={len(self.unexpected)}"
        )


def check(attempted: Iterable[str], confirmed: Iterable[str], received: Iterable[str]) -> Verdict:
    """Compare what was attempted and confirmed with what a drain received.

    *lost*: confirmed but never received.  *duplicated*: received more than
    once.  *unexpected*: received but never published.
    """
    attempted_set = set(attempted)
    confirmed_set = set(confirmed)
    counts = Counter(received)
    return Verdict(
        lost=frozenset(confirmed_set - counts.keys()),
        duplicated=frozenset(m for m, n in counts.items() if n > 1),
        unexpected=frozenset(counts.keys() - attempted_set - confirmed_set),
        confirmed=len(confirmed_set),
        received=sum(counts.values()),
    )
