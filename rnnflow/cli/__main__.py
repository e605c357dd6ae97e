"""`python -m rnnflow.cli`: the `rnnflow` command."""

import sys

from .main import main

sys.exit(main())
