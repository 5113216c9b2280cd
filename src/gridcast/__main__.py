"""`python -m gridcast ...` runs the `gridcast` command."""
import sys

from gridcast.cli.app import main

sys.exit(main())
