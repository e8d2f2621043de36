"""``python -m offload_assets.cli`` is the ``offload-assets`` command."""

import sys

from offload_assets.cli.main import main

sys.exit(main())
