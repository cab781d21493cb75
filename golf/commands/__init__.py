"""CLI subcommands. Each module offers `add_parser(subparsers)`; the parser's `func(args) -> int` runs it."""
