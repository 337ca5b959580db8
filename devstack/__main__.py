"""`python -m devstack`: run the local stack (see `devstack.stack`)."""

import sys

from .stack import main

sys.exit(main())
