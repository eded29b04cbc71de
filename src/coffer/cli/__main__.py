"""`python -m coffer.cli`, as the `coffer` script."""

from coffer.cli import main

main()
