"""`python -m gridcast ...` runs the `gridcast` command."""
import sys

from gridcast.cli.main import main

sys.exit(main())
