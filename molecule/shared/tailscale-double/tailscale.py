#!/usr/bin/python3
"""/usr/bin/tailscale in the Molecule containers: the `tailscale` CLI test double."""

import sys

sys.path.insert(0, "/usr/lib/tailscale-double")

from tailscale_double.cli import main

sys.exit(main())
