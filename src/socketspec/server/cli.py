"""The former home of the ``socketspec-cluster`` command, kept importable and runnable
(``python -m socketspec.server.cli``): the command is ``socketspec.cluster.cli``."""

import sys

from socketspec.cluster import cli as _cli

if __name__ == "__main__":
    sys.exit(_cli.main())
else:
    sys.modules[__name__] = _cli
