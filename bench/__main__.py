import sys

from bench import projector

COMMANDS = {"projector": projector.main}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(f"usage: python -m bench {{{'|'.join(COMMANDS)}}} [--size small|large]\n")
        sys.exit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
