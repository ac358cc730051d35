"""`python -m pipeline` runs the `image-versions` command."""

import sys

from .cli import main

sys.exit(main())
