import sys
from collections.abc import Callable
from typing import Any


def _all(argv: list[str]) -> Any:
    from bench import suite

    return suite.main(argv)


def _projector(argv: list[str]) -> Any:
    from bench import projector

    return projector.main(argv)


def _safety(argv: list[str]) -> Any:
    from bench import safety

    return safety.main(argv)


def _scaling(argv: list[str]) -> Any:
    from bench import scaling

    return scaling.main(argv)


COMMANDS: dict[str, Callable[[list[str]], Any]] = {
    "all": _all,
    "projector": _projector,
    "safety": _safety,
    "scaling": _scaling,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(f"usage: python -m bench {{{'|'.join(COMMANDS)}}} [--size small|large]\n")
        sys.exit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
