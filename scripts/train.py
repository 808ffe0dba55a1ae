"""Train with a trainer of this package from a recipe; the same as the `trl-policysplit` console script.

python scripts/train.py --config recipes/demo/smollm2_arithmetic_cpu.yaml
"""

import sys

from _environment import require_package

require_package("train.py")

from trl_policysplit.tools.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
