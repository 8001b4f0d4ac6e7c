"""`python -m kdns`: the same entry point as the `kdns` command."""

import sys

from kdns.cli import main

sys.exit(main())
