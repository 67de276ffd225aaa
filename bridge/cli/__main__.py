"""``python -m bridge.cli``: the same as the ``ldm3d-bridge`` command."""

import sys

from bridge.cli.main import main

sys.exit(main())
