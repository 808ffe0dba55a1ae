"""Plot a training run's metrics: per-mode reward, entropy, inter-mode KL, shaping statistics.

    python scripts/plot.py runs/demo                       # -> runs/demo/plots/training.png (+ training.json)
    python scripts/plot.py runs/demo/metrics.jsonl --output out.png

RUN_DIR_OR_LOG_FILE is a metrics.jsonl, a trainer_state.json, or a run directory holding one (or a checkpoint-*
with a trainer_state.json). Exits with status 2 and a one-line message when there is nothing to plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _environment import require_package

require_package("plot.py")

from trl_policysplit.tools.optional import MissingOptionalPackage  # noqa: E402
from trl_policysplit.tools.plotting import SMOOTHING, plot_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="RUN_DIR_OR_LOG_FILE")
    parser.add_argument("--output", default=None, help="PNG to write (default: <run dir>/plots/training.png)")
    parser.add_argument(
        "--smoothing", type=float, default=SMOOTHING, help="weight of the smoothed line, TensorBoard's, in [0, 1)"
    )
    args = parser.parse_args(argv)
    try:
        summary = plot_run(args.path, args.output, args.smoothing)
    except (ValueError, OSError, MissingOptionalPackage) as error:
        print(f"plot.py: error: {str(error).replace(chr(10), ' ')}", file=sys.stderr)
        return 2
    summary_file = Path(summary["image"]).with_suffix(".json")
    print(f"wrote {summary['image']} and {summary_file}: panels {', '.join(summary['panels'])}")
    for key, item in summary["left_out"].items():
        print(f"  not drawn: {key} ({item['reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
