"""``python -m quadratseg_handlers``: the ``quadratseg`` command."""

import sys

from quadratseg_handlers.cli.main import main

sys.exit(main())
