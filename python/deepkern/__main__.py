"""python -m deepkern: the command line (see deepkern.cli)."""
from .cli import main

raise SystemExit(main())
