"""Train with a trainer of this package from a recipe; the same as the `trl-policysplit` console script.

python scripts/train.py --config recipes/demo/smollm2_arithmetic_cpu.yaml
"""

import sys

from trl_policysplit.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
