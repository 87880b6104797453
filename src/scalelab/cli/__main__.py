"""`python -m scalelab.cli ...` runs the command line (tests and subprocesses use it)."""

from scalelab.cli import entry

entry()
