"""``python -m harness`` is ``restore-drill``."""

from harness.cli import main

main()
