"""`python -m node` runs the CLI."""

import sys

from node.cli import main

sys.exit(main())
