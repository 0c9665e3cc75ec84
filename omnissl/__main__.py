import sys

from omnissl.cli import main

sys.exit(main())
