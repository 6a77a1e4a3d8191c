"""`python -m mmbench` is the same as the `mmbench` console script."""

import sys

from mmbench.cli.main import main

sys.exit(main())
