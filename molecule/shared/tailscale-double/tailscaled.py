#!/usr/bin/python3
"""/usr/sbin/tailscaled in the Molecule containers: the tailscaled test double."""

import sys

sys.path.insert(0, "/usr/lib/tailscale-double")

from tailscale_double.daemon import main

sys.exit(main())
