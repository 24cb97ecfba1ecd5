#!/usr/bin/env python3
"""A local stand-in for Tailscale's apt repository (pkgs.tailscale.com/stable), run on the controller.

  tailscale_mirror.py OUT.tar DIST [DIST...]      DIST: <id>/<codename>, e.g. raspbian/bookworm

writes a tar archive with, for each DIST, the layout of the real repository:
  <id>/<codename>.noarmor.gpg                     the signing key (binary OpenPGP, like Tailscale's)
  <id>/dists/<codename>/InRelease                 a Release file, clear-signed with that key
  <id>/dists/<codename>/main/binary-<arch>/Packages   empty (no package: the test double provides
                                                      tailscale and tailscaled)
(one archive: copying it into a container is one step, where a tree would be one per file).
The key is made for this run in a throw-away GNUPGHOME (gpg on the controller). Only DISTs given are
written, so a role that picks another <id>/<codename> finds no key there and fails.
"""

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from email.utils import formatdate
from pathlib import Path

ARCHES = ("amd64", "arm64", "armhf")


def gpg(home: str, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        [
            "gpg",
            "--homedir",
            home,
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            *args,
        ],
        input=stdin,
        check=True,
        capture_output=True,
    ).stdout


def release(codename: str, indexes: dict[str, bytes]) -> bytes:
    lines = [
        "Origin: Tailscale",
        "Label: Tailscale (Molecule stand-in)",
        f"Suite: {codename}",
        f"Codename: {codename}",
        f"Architectures: {' '.join(ARCHES)}",
        "Components: main",
        f"Date: {formatdate(usegmt=True)}",
        "SHA256:",
    ]
    for path, data in sorted(indexes.items()):
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {path}")
    return ("\n".join(lines) + "\n").encode()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any(d.count("/") != 1 for d in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as tree:
        out = Path(tree)
        gpg(
            home,
            "--passphrase",
            "",
            "--quick-gen-key",
            "Tailscale stand-in <molecule@invalid>",
        )
        key = gpg(home, "--export")
        for dist in argv[1:]:
            os_id, codename = dist.split("/")
            top = out / os_id
            suite = top / "dists" / codename
            indexes = {f"main/binary-{arch}/Packages": b"" for arch in ARCHES}
            for path, data in indexes.items():
                (suite / path).parent.mkdir(parents=True, exist_ok=True)
                (suite / path).write_bytes(data)
            signed = gpg(
                home,
                "--digest-algo",
                "SHA512",
                "--clearsign",
                stdin=release(codename, indexes),
            )
            (suite / "InRelease").write_bytes(signed)
            (top / f"{codename}.noarmor.gpg").write_bytes(key)
        partial = Path(argv[0] + ".partial")
        with tarfile.open(partial, "w") as tar:
            for path in sorted(out.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(out)), recursive=False)
        partial.replace(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
