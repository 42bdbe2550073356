"""``python -m shoprec`` is the ``shoprec`` console script."""

import sys

from shoprec.app.cli import main

sys.exit(main())
