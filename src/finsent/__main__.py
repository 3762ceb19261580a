"""``python -m finsent``: what accelerate and torchrun launch with ``-m``."""

import sys

from finsent.cli import main

sys.exit(main())
