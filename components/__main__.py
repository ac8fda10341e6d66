"""``python -m components`` runs the ``cataract-cam`` command line."""

import sys

from components.cli import main

sys.exit(main())
