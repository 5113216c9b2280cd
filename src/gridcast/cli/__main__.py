import sys

from gridcast.cli.app import main

sys.exit(main())
