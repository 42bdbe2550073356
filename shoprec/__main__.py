"""``python -m shoprec`` is the ``shoprec`` console script."""

import sys

from shoprec.cli import main

sys.exit(main())
