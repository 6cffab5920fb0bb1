"""The soak test's figures, printed in pytest's terminal summary."""

figures: dict[str, object] = {}
