"""``python -m bench.cell CELL.json RESULT.json``: one cell in a process of its own."""

import sys

from bench.cell.main import exit_now, main

exit_now(main(sys.argv[1:]))
