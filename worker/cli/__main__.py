"""``python -m worker.cli``: the ``shardsync`` command line."""

import sys

from worker.cli.main import main

sys.exit(main())
