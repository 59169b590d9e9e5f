import sys

from xrdcore.cli import main

sys.exit(main())
