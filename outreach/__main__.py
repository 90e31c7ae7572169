"""python -m outreach."""

from .cli import main

main()
