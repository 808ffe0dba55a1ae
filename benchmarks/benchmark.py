"""`scripts/benchmark.py`: the studies of this package's trainers, one subcommand each.

python scripts/benchmark.py overhead --quick     # cost against GRPOTrainer (`overhead.py`)
python scripts/benchmark.py testbed --quick      # exploration on a small CPU task, many seeds (`testbed.py`)
python scripts/benchmark.py learning --quick     # SmolLM2-135M-Instruct on arithmetic, multi-seed (`learning.py`)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import learning, overhead, testbed


def _defaults(module) -> str:
    return (
        " Defaults: "
        + ", ".join(f"{key} {value}" for key, value in module.DEFAULTS.items())
        + "; --quick: "
        + ", ".join(f"{key} {value}" for key, value in module.QUICK.items() if module.DEFAULTS[key] != value)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    overhead.add_arguments(
        commands.add_parser(
            "overhead",
            help="step time, peak memory and phases of each trainer against GRPOTrainer",
            description=overhead.describe(),
        )
    )
    testbed.add_arguments(
        commands.add_parser(
            "testbed",
            help="exploration on a fast synthetic task: every method, many seeds, CIs and the papers' claims",
            description=testbed.__doc__.split("\n\n")[0] + _defaults(testbed),
        )
    )
    learning.add_arguments(
        commands.add_parser(
            "learning",
            help="what each method does to SmolLM2-135M-Instruct on the arithmetic task, same budget for each",
            description=learning.__doc__.split("\n\n")[0] + _defaults(learning),
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "learning":
        return learning.main(args, argv)
    if args.command == "testbed":
        return testbed.main(args)
    return overhead.main(args)


if __name__ == "__main__":
    sys.exit(main())
