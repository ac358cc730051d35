"""`python -m pipeline` runs the `image-versions` command."""

from .cli import run

run()
