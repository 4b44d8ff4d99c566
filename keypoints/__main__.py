import sys

from .cli import main, run

sys.exit(run(main))
