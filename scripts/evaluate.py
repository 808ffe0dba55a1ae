"""Evaluate a checkpoint in both Policy Split modes: pass@k, token entropy and diversity on a held-out split.

    python scripts/evaluate.py runs/demo                                  # -> runs/demo/eval/test.json
    python scripts/evaluate.py smollm2-135m-instruct --num-samples 8 --k 1 4 8 --output base.json

See `trl_policysplit.tools.evaluation` (or --help) for the metrics and the defaults a training run's directory
supplies.
Exits with status 2 and a one-line message on a mistake in the command or the data.
"""

import sys

from _environment import require_package

require_package("evaluate.py")

from trl_policysplit.tools.evaluation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
