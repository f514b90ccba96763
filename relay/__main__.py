"""`python -m relay` and the `grasp-relay` script: the command line lives in relay.daemon.cli."""

import sys

from relay.daemon.cli import main

if __name__ == "__main__":
    sys.exit(main())
