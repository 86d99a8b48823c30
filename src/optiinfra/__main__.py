"""`python -m optiinfra` runs the command line."""

from optiinfra.cli import main

main()
