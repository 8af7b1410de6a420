"""``python -m merflow``: the same as the ``merflow`` command (the workflow's rules call it so,
through the interpreter of the environment they run in)."""

import sys

from merflow.cli import main

sys.exit(main())
