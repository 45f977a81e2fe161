"""``python -m edge_daemon`` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
