"""`python -m scalelab ...` runs the command line, as the `scalelab` script does."""

from scalelab.cli import entry

entry()
