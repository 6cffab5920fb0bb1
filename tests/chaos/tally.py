"""What the chaos suite survived, printed in pytest's terminal summary."""

from collections import Counter

survived: Counter[str] = Counter()


def count(what: str, n: int = 1) -> None:
    survived[what] += n
