import sys

from gridcast.cli.main import main

sys.exit(main())
