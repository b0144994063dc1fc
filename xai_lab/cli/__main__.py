"""`python -m xai_lab.cli`: the same command line as `xai-lab`."""

import sys

from xai_lab.cli import main

sys.exit(main())
