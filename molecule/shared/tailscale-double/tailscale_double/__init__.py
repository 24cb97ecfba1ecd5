"""tailscale-double: a TEST DOUBLE of Tailscale for the Molecule scenarios. It is NOT Tailscale.

``cli`` is the `tailscale` command (installed as /usr/bin/tailscale), ``daemon`` is tailscaled
(/usr/sbin/tailscaled, run by tailscaled.service); ``common`` holds what both read: the state
directory and the node's addresses. molecule/shared/prepare.yml installs the package in
/usr/lib/tailscale-double and the two thin executables (tailscale.py, tailscaled.py) at the
Debian package's paths.
"""
