import sys

from senet.cli import main

sys.exit(main())
