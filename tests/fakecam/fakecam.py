"""The emulated UVC camera, for tests: build the library, make cameras, inject faults.

Standard library only. Tests import it by path::

    sys.path.insert(0, str(REPO / "tests" / "fakecam"))
    import fakecam

    cams = fakecam.create(tmp_path / "cam", profiles=["c920"], frames=jpeg_dir)
    subprocess.run(["v4l2-ctl", "-d", str(cams.node(0)), "--all"], env=cams.env())
    cams.unplug(0)
    cams.replug(0, number=3)

See docs/testing.md, "The emulated camera".
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
BUILD_DIR = HERE / ".build"
PROFILES = ("c920", "yuyv", "dead")
ACTIONS = ("unplug", "replug", "stall", "corrupt", "nospace", "clear")
CFLAGS = (
    "-std=gnu11",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Wno-format-truncation",
    "-Wno-nonnull-compare",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
)
LIBS = ("-ldl", "-lpthread")


class FakecamError(RuntimeError):
    """The emulation could not be built or set up, or a fault could not be injected."""


def _digest(cc: str) -> str:
    h = hashlib.sha256()
    h.update(" ".join((cc, *CFLAGS, *LIBS)).encode())
    for path in sorted(SRC.glob("*.[ch]")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(cc: str | None = None) -> Path:
    """Compile libfakecam.so (once per source hash) and return its path.

    The output goes to tests/fakecam/.build/<hash>/ (git-ignored), written under a temporary
    name and renamed, so tests running in parallel never see half a library.
    """
    cc = cc or os.environ.get("CC") or "gcc"
    out = BUILD_DIR / _digest(cc) / "libfakecam.so"
    if out.exists():
        return out
    if shutil.which(cc) is None:
        raise FakecamError(
            f"fakecam: C compiler {cc!r} not found; install gcc and libc6-dev "
            "(scripts/ci-setup does)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="libfakecam.", suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [cc, *CFLAGS, "-o", tmp, *map(str, sorted(SRC.glob("*.c"))), *LIBS]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        os.unlink(tmp)
        raise FakecamError(f"fakecam: build failed: {' '.join(cmd)}\n{result.stderr}")
    os.replace(tmp, out)
    return out


_libs: dict[Path, ctypes.CDLL] = {}


def _lib(path: Path) -> ctypes.CDLL:
    # Loaded without LD_PRELOAD: only fakecam_create/_ctl/_describe are used, the libc
    # wrappers stay inactive (they bind only when preloaded).
    lib = _libs.get(path)
    if lib is None:
        lib = ctypes.CDLL(str(path))
        for name in ("fakecam_create", "fakecam_ctl", "fakecam_describe"):
            getattr(lib, name).restype = ctypes.c_int
        _libs[path] = lib
    return lib


def _check(ret: int, err: ctypes.Array[ctypes.c_char]) -> None:
    if ret != 0:
        raise FakecamError(f"fakecam: {err.value.decode(errors='replace')}")


class Cameras:
    """The emulated cameras of one directory (what fakecam-run --dir names)."""

    def __init__(self, directory: Path | str, lib: Path | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.lib = lib or build()
        if not (self.dir / ".fakecam" / "cam0.state").exists():
            raise FakecamError(f"fakecam: {self.dir} holds no emulated camera")

    # -- running programs under the emulation --

    def env(self, base: Mapping[str, str] | None = None, *, dev: bool = False) -> dict[str, str]:
        """The environment for a subprocess that should see the cameras.

        dev=True also presents them as /dev/videoN and /dev/v4l/by-id/... inside it.
        """
        env = dict(os.environ if base is None else base)
        preload = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = f"{self.lib}:{preload}" if preload else str(self.lib)
        env["FAKECAM_DIR"] = str(self.dir)
        if dev:
            env["FAKECAM_DEV"] = "1"
        else:
            env.pop("FAKECAM_DEV", None)
        return env

    # -- what the cameras are now --

    def state(self) -> list[dict]:
        """Per camera: index, profile, plugged, node, by_id, fault, owner_pid, streaming,
        frames (completed so far), corrupted, format {fourcc, width, height,
        interval_100ns}, controls {v4l2-ctl name: value}."""
        err = ctypes.create_string_buffer(512)
        buf = ctypes.create_string_buffer(1 << 16)
        lib = _lib(self.lib)
        _check(lib.fakecam_describe(str(self.dir).encode(), buf, len(buf), err, len(err)), err)
        return json.loads(buf.value.decode())

    def camera(self, camera: int | str = 0) -> dict:
        index = self._index(camera)
        return self.state()[index]

    def node(self, camera: int | str = 0) -> Path:
        """DIR/videoN of the camera (it does not exist while the camera is unplugged)."""
        return self.dir / self.camera(camera)["node"]

    def dev_node(self, camera: int | str = 0) -> str:
        """/dev/videoN, as programs run with env(dev=True) see the camera."""
        return "/dev/" + self.camera(camera)["node"]

    def by_id(self, camera: int | str = 0) -> Path:
        """DIR/by-id/usb-...-video-index0: keeps its name across replugs."""
        return self.dir / "by-id" / self.camera(camera)["by_id"]

    def dev_by_id(self, camera: int | str = 0) -> str:
        return "/dev/v4l/by-id/" + self.camera(camera)["by_id"]

    # -- faults --

    def ctl(self, camera: int | str, action: str, number: int | None = None) -> None:
        if action not in ACTIONS:
            raise FakecamError(f"fakecam: unknown action {action!r} (one of {', '.join(ACTIONS)})")
        err = ctypes.create_string_buffer(512)
        name = f"cam{camera}" if isinstance(camera, int) else camera
        ret = _lib(self.lib).fakecam_ctl(
            str(self.dir).encode(),
            name.encode(),
            action.encode(),
            -1 if number is None else number,
            err,
            len(err),
        )
        _check(ret, err)

    def unplug(self, camera: int | str = 0) -> None:
        """The node disappears; open fds fail with ENODEV, a waiting DQBUF gets an errored
        buffer, poll() reports POLLERR|POLLHUP."""
        self.ctl(camera, "unplug")

    def replug(self, camera: int | str = 0, number: int | None = None) -> None:
        """The camera comes back (as videoN if number is given), controls at defaults."""
        self.ctl(camera, "replug", number)

    def stall(self, camera: int | str = 0) -> None:
        """No more frames: DQBUF blocks, poll()/select() time out."""
        self.ctl(camera, "stall")

    def corrupt(self, camera: int | str = 0) -> None:
        """Frames come truncated (no EOI) and as garbage, alternately."""
        self.ctl(camera, "corrupt")

    def nospace(self, camera: int | str = 0) -> None:
        """STREAMON fails with ENOSPC (no USB bandwidth)."""
        self.ctl(camera, "nospace")

    def clear(self, camera: int | str = 0) -> None:
        """No fault (does not replug an unplugged camera)."""
        self.ctl(camera, "clear")

    def _index(self, camera: int | str) -> int:
        if isinstance(camera, int):
            return camera
        states = self.state()
        for want_plugged in (True, False):
            for cam in states:
                if camera in (f"cam{cam['index']}", str(cam["index"])):
                    return cam["index"]
                if cam["node"] == camera and cam["plugged"] == want_plugged:
                    return cam["index"]
        raise FakecamError(f"fakecam: no camera {camera!r} in {self.dir}")


def create(
    directory: Path | str,
    cameras: int | None = None,
    profiles: Sequence[str] = ("c920",),
    frames: Path | str | None = None,
    lib: Path | None = None,
) -> Cameras:
    """Make DIR/video0... (one camera per profile; the last profile repeats up to cameras).

    frames: a directory of JPEG files that MJPG streams deliver byte for byte, cycled.
    """
    lib = lib or build()
    count = cameras if cameras is not None else max(1, len(profiles))
    err = ctypes.create_string_buffer(512)
    ret = _lib(lib).fakecam_create(
        str(directory).encode(),
        count,
        ",".join(profiles).encode(),
        None if frames is None else str(frames).encode(),
        err,
        len(err),
    )
    _check(ret, err)
    return Cameras(directory, lib)
