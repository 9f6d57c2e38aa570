"""`python -m srode_plugins ...` is the `basicsr` command."""

import sys

from srode_plugins.cli import main

sys.exit(main())
