import sys

from lsml_hub.cli import main

sys.exit(main())
