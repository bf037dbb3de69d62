"""``python -m movierec`` is the ``movierec`` command."""

from movierec.cli.main import main

main()
