"""`python -m opq`: the same as the `opq` command."""

from opq.cli.main import main

main()
