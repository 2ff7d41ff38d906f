"""Harness for driving real VNC programs against a server under test.

What the real-client tests share: starting a server (vncd or QEMU 7.2) as a
subprocess and stopping it; a test picture and exact pixel comparison;
gtk-vnc's ``gvnccapture`` (its certificate directories under ``/etc/pki``
and the passwd home's ``.pki``, installed and restored under a lock, and a
pty to type its password into); an Xvfb whose framebuffer is read back
from its ``-fbdir`` XWD file; TigerVNC ``vncviewer`` with a password file
in vncpasswd's obfuscated form; and vncdotool, run in a child process
(``python -m tests.vncd.realclients`` is its driver) so its reactor thread
never meets trial's.

Every child process has a deadline and is killed by the cleanup the
helpers register on the test case.  Nothing here knows how vncd is built:
it talks to vncd only through its command line and the network.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from PIL import Image
from twisted.trial.unittest import FailTest, SkipTest

from tests.tools import QEMU, ROOT, free_display, require_tool

__all__ = [
    "Proc", "launch", "start_server", "qemu_command", "vncd_command", "require_vncd",
    "make_picture", "write_png", "read_png", "locate", "pixel_mismatch",
    "assert_same_pixels",
    "GvncPki", "gvnccapture", "Xvfb", "parse_xwd", "XwdError",
    "vnc_password_file_bytes", "vncviewer_command", "start_vncviewer", "run_vncdo",
    "wait_until", "RfbTap", "first_encoding", "TapError", "ENCODING_NAMES",
]

#: Seconds a server gets to start listening.  vncd imports Twisted,
#: cryptography and numpy (about a second on this machine); 30 s allows for
#: a loaded 2-core CI box and still fails a hung start promptly.
START_TIMEOUT = 30.0

#: Seconds a client run (connect, handshake, one capture) may take before it
#: is killed.  A capture over loopback takes well under a second; the slack
#: is for pure-Python decoders (vncdotool's ZRLE) on a busy machine.
CLIENT_TIMEOUT = 60.0

#: Seconds between SIGTERM and SIGKILL when stopping a child.
STOP_GRACE = 5.0

#: Bytes of a child's output kept for failure messages; more is noise.
MAX_OUTPUT = 256 * 1024

#: Seconds to wait for the gvnccapture certificate lock.  Holders keep it for
#: one test (a few seconds); two minutes cover a queue of parallel workers.
PKI_LOCK_TIMEOUT = 120.0

#: Where gvnccapture's certificate state is serialised between processes
#: (trial -j workers, several developers' runs) and where a crashed run's
#: backup is found again.  Root-owned /var/tmp survives reboots of /tmp.
PKI_LOCK_PATH = "/var/tmp/vncd-tests-gvnc-pki.lock"
PKI_BACKUP_DIR = "/var/tmp/vncd-tests-gvnc-pki-backup"

#: The fixed DES key vncpasswd uses to obfuscate stored passwords, already
#: bit-reversed for a standard DES implementation (the VNC d3des variant
#: takes it as 23,82,107,6,35,78,88,7).
VNCPASSWD_KEY = bytes.fromhex("e84ad660c4721ae0")

#: Largest XWD image accepted (pixels per side); Xvfb screens in these tests
#: are at most 1920 wide, and the cap bounds what a corrupt header allocates.
MAX_XWD_SIDE = 8192

#: Bytes of an XWD header (25 big-endian CARD32 fields).
XWD_HEADER_SIZE = 100

#: Longest window name accepted in an XWD header.
MAX_XWD_NAME = 4096

#: Most colormap entries an XWD file may carry (8-bit visuals have 256).
MAX_XWD_COLORS = 65536


# -- processes ---------------------------------------------------------------

class Proc:
    """A child process whose output goes to a file, stopped by :meth:`stop`."""

    def __init__(self, argv: list[str], *, name: str, env: dict | None = None,
                 cwd: str | None = None, stdin=subprocess.DEVNULL,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.argv = argv
        self.name = name
        self._out = tempfile.TemporaryFile()
        self._final: str | None = None
        self.popen = subprocess.Popen(
            argv, stdin=stdin, stdout=self._out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, pass_fds=pass_fds, start_new_session=True)

    def poll(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        """What the child printed so far (stdout and stderr), capped."""
        if self._final is not None:
            return self._final
        self._out.flush()
        self._out.seek(0)
        data = self._out.read(MAX_OUTPUT)
        self._out.seek(0, os.SEEK_END)
        return data.decode("utf-8", "replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE`; returns the exit status."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            if self.wait(STOP_GRACE) is None:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        if self._final is None:
            self._final = self.output()
            self._out.close()
        return self.popen.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def describe(self) -> str:
        return (f"{self.name} (exit status {self.popen.poll()}):\n"
                f"{self.output()[-4000:]}")


def qemu_command(args: list[str]) -> list[str]:
    """QEMU 7.2 as a bare VNC server with ``args`` (``-object``, ``-vnc`` ...)."""
    return [require_tool(QEMU), "-machine", "none", "-nodefaults",
            "-display", "none", "-monitor", "none", "-serial", "none", *args]


def require_vncd() -> None:
    """Skip (or, in CI, fail) when ``python -m vncd`` does not exist yet."""
    if not os.path.exists(os.path.join(ROOT, "vncd", "__main__.py")):
        msg = "*** vncd/__main__.py is missing: python -m vncd cannot serve ***"
        if os.environ.get("VNCD_REQUIRE_TOOLS"):
            raise FailTest(msg)
        raise SkipTest(msg)


def vncd_command(args: list[str]) -> list[str]:
    """``python -m vncd`` with ``args``, from this checkout."""
    require_vncd()
    return [sys.executable, "-m", "vncd", *args]


def _child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if extra:
        env.update(extra)
    return env


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


#: Starts on other displays when a parallel test took the port first.
PORT_RETRIES = 3


def launch(argv: list[str], ports: list[int], *, name: str,
           timeout: float = START_TIMEOUT) -> Proc:
    """Start ``argv`` and wait until every port in ``ports`` accepts or it exits.

    Returns the process either way; ``proc.poll()`` is ``None`` when it
    listens.  The caller stops it.  A process that neither listens nor
    exits within ``timeout`` is stopped and reported as an error.
    """
    proc = Proc(argv, name=name, env=_child_env(), cwd=ROOT)
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{name} neither listened on {waiting} nor exited"
                               f" within {timeout} s: {proc.describe()}")
        if _port_open(waiting[0]):
            waiting.pop(0)
        else:
            time.sleep(0.05)
    return proc


def start_server(test, argv: list[str], ports: list[int], *, name: str,
                 timeout: float = START_TIMEOUT) -> Proc:
    """:func:`launch` for a server that must start; stopped by a cleanup on ``test``."""
    proc = launch(argv, ports, name=name, timeout=timeout)
    test.addCleanup(proc.stop)
    if proc.poll() is not None:
        test.fail(f"{name} exited before listening: {proc.describe()}")
    return proc


def wait_until(predicate, timeout: float, interval: float = 0.1):
    """Call ``predicate`` until it returns something true or ``timeout`` passes.

    Returns the last value (false when the deadline passed).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- pictures ----------------------------------------------------------------

def make_picture(width: int = 301, height: int = 203, seed: int = 4) -> np.ndarray:
    """A deterministic RGB picture that exercises every kind of encoder path.

    Odd sizes leave partial 16x16 and 64x64 tiles at the edges; it has solid
    blocks (run-length/fill paths), gradients (many colours per tile), a
    noise band (raw fallbacks) and a one-pixel grid (subrectangles).
    """
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = ((x + y) % 256).astype(np.uint8)
    img[10:60, 10:90] = (255, 0, 0)
    img[10:60, 100:180] = (0, 255, 0)
    img[70:120, 10:90] = (0, 0, 255)
    img[70:120, 100:180] = (255, 255, 255)
    grid = img[130:190, 10:130]
    grid[::4, :] = (0, 0, 0)
    grid[:, ::4] = (255, 255, 0)
    rng = np.random.default_rng(seed)
    band = img[130:190, 140:max(width - 10, 140)]
    band[...] = rng.integers(0, 256, band.shape, dtype=np.uint8)
    return img


def write_png(path: str, rgb: np.ndarray) -> str:
    Image.fromarray(rgb, "RGB").save(path)
    return path


def read_png(path: str) -> np.ndarray:
    """An image file as an (h, w, 3) uint8 RGB array (alpha dropped, not blended)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "RGBX"):
            return np.asarray(im)[..., :3].copy()
        return np.asarray(im.convert("RGB")).copy()


def pixel_mismatch(got: np.ndarray, expected: np.ndarray) -> str | None:
    """``None`` when equal, else a one-line description of the difference."""
    if got.shape != expected.shape:
        return (f"size {got.shape[1]}x{got.shape[0]},"
                f" expected {expected.shape[1]}x{expected.shape[0]}")
    diff = np.any(got != expected, axis=-1)
    count = int(diff.sum())
    if not count:
        return None
    yy, xx = np.argwhere(diff)[0]
    return (f"{count} of {diff.size} pixels differ; first at ({xx},{yy}):"
            f" got {tuple(int(v) for v in got[yy, xx])},"
            f" expected {tuple(int(v) for v in expected[yy, xx])}")


#: Pixels sampled when looking for a picture on a larger screen: enough to
#: make a false position astronomically unlikely, few enough to test every
#: offset of an 800x600 screen at once.
LOCATE_SAMPLES = 64


def locate(screen: np.ndarray, picture: np.ndarray) -> tuple[int, int] | None:
    """Where ``picture`` appears, pixel for pixel, on ``screen``: ``(x, y)`` or ``None``.

    Every offset is first tested on a sample of the picture's pixels
    (mostly ones unlike its commonest colour, so a dark picture with a
    little text is still found in the right place), then confirmed whole.
    """
    height, width = picture.shape[:2]
    room_y, room_x = screen.shape[0] - height + 1, screen.shape[1] - width + 1
    if room_y < 1 or room_x < 1:
        return None
    flat = picture.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    common = colours[np.argmax(counts)]
    unusual = np.flatnonzero(np.any(flat != common, axis=1))
    chosen = unusual[np.linspace(0, len(unusual) - 1, min(len(unusual), LOCATE_SAMPLES - 8))
                     .astype(int)] if len(unusual) else np.array([], int)
    spread = np.linspace(0, len(flat) - 1, 8).astype(int)
    possible = np.ones((room_y, room_x), bool)
    for index in np.concatenate([chosen, spread]):
        y, x = divmod(int(index), width)
        window = screen[y:y + room_y, x:x + room_x]
        possible &= np.all(window == picture[y, x], axis=-1)
    for y, x in np.argwhere(possible):
        if np.array_equal(screen[y:y + height, x:x + width], picture):
            return int(x), int(y)
    return None


def assert_same_pixels(test, got: np.ndarray, expected: np.ndarray, what: str) -> None:
    problem = pixel_mismatch(got, expected)
    if problem is not None:
        test.fail(f"{what}: {problem}")


# -- gvnccapture ---------------------------------------------------------------

def _home() -> str:
    """The passwd-entry home gtk-vnc uses (``getpwuid``, not ``$HOME``)."""
    return pwd.getpwuid(os.getuid()).pw_dir


class GvncPki:
    """gvnccapture's certificate directories, borrowed for one test.

    gtk-vnc reads ``CA/cacert.pem`` (and ``CA/cacrl.pem``) from ``/etc/pki``
    first, then from ``~/.pki``, and its client certificate from
    ``<dir>/gvnccapture/clientcert.pem`` and ``private/clientkey.pem``.
    :meth:`acquire` takes a cross-process lock, moves whatever is at those
    four places aside (writing a manifest first, so a crashed holder's state
    is restored by the next one), and :meth:`release` puts it all back.
    Tests call ``GvncPki.borrow(self)``, which registers the release.
    """

    def __init__(self, system_dir: str = "/etc/pki", user_dir: str | None = None,
                 lock_path: str = PKI_LOCK_PATH, backup_dir: str = PKI_BACKUP_DIR) -> None:
        self.system_dir = system_dir
        self.user_dir = user_dir or os.path.join(_home(), ".pki")
        self.lock_path = lock_path
        self.backup_dir = backup_dir
        self._lock_fd: int | None = None

    @property
    def managed(self) -> list[str]:
        return [os.path.join(base, sub) for base in (self.system_dir, self.user_dir)
                for sub in ("CA", "gvnccapture")]

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.backup_dir, "manifest.json")

    @classmethod
    def borrow(cls, test, **kw) -> "GvncPki":
        pki = cls(**kw)
        pki.acquire()
        test.addCleanup(pki.release)
        return pki

    def acquire(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + PKI_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(f"{self.lock_path}: still locked after "
                                       f"{PKI_LOCK_TIMEOUT} s")
                time.sleep(0.1)
        self._lock_fd = fd
        try:
            self.recover()
            self._move_aside()
        except BaseException:
            self._unlock()
            raise

    def recover(self) -> bool:
        """Restore a crashed holder's backup, if one is left; True if there was."""
        if not os.path.exists(self.manifest_path):
            return False
        self._restore()
        return True

    def _move_aside(self) -> None:
        os.makedirs(self.backup_dir, mode=0o700, exist_ok=True)
        entries = []
        for index, path in enumerate(self.managed):
            entries.append({"path": path, "existed": os.path.lexists(path),
                            "backup": os.path.join(self.backup_dir, str(index))})
        parents = [{"path": base, "existed": os.path.isdir(base)}
                   for base in (self.system_dir, self.user_dir)]
        manifest = {"entries": entries, "parents": parents}
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)
        for entry in entries:
            if entry["existed"]:
                shutil.move(entry["path"], entry["backup"])

    def _restore(self) -> None:
        with open(self.manifest_path) as f:
            manifest = json.load(f)
        for entry in manifest["entries"]:
            path, backup = entry["path"], entry["backup"]
            if entry["existed"]:
                if not os.path.lexists(backup):
                    continue  # never moved: the original is still in place
                _remove(path)
                shutil.move(backup, path)
            else:
                _remove(path)
        for parent in manifest["parents"]:
            if not parent["existed"] and os.path.isdir(parent["path"]):
                try:
                    os.rmdir(parent["path"])
                except OSError:
                    pass  # something else lives there now: leave it
        os.unlink(self.manifest_path)
        shutil.rmtree(self.backup_dir, ignore_errors=True)

    def release(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self._restore()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def install(self, *, ca: bytes | None = None, crl: bytes | None = None,
                client_cert: bytes | None = None, client_key: bytes | None = None,
                ca_in: str = "user") -> None:
        """Write the CA (into ``/etc/pki`` when ``ca_in="system"``) and client identity."""
        if self._lock_fd is None:
            raise RuntimeError("GvncPki.install() before acquire()")
        base = self.system_dir if ca_in == "system" else self.user_dir
        if ca is not None:
            _write(os.path.join(base, "CA", "cacert.pem"), ca, 0o644)
        if crl is not None:
            _write(os.path.join(base, "CA", "cacrl.pem"), crl, 0o644)
        if client_cert is not None:
            _write(os.path.join(self.user_dir, "gvnccapture", "clientcert.pem"),
                   client_cert, 0o644)
        if client_key is not None:
            _write(os.path.join(self.user_dir, "gvnccapture", "private", "clientkey.pem"),
                   client_key, 0o600)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _write(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class ClientRun:
    """How a client program ended."""

    status: int | None
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 0 and not self.timed_out


#: What gvnccapture prints before reading a password from its terminal.
GVNC_PASSWORD_PROMPT = b"Password:"


def gvnccapture(host: str, display: int, out: str, *, password: str | None = None,
                timeout: float = CLIENT_TIMEOUT) -> ClientRun:
    """Run ``gvnccapture HOST:DISPLAY OUT`` on a pty, typing ``password`` if asked.

    gvnccapture prints its prompt, then turns echo off with ``TCSAFLUSH``
    (which discards pending input) and reads a line; the password is written
    only once echo is off, so it cannot be flushed away.  Asked for a
    password without one, it gets an empty line.
    """
    exe = require_tool("gvnccapture")
    master, slave = pty.openpty()
    argv = [exe, f"{host}:{display}", out]
    try:
        popen = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, env=_child_env())
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    output = bytearray()
    sent = False
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            if time.monotonic() > deadline:
                timed_out = True
                break
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if len(output) < MAX_OUTPUT:
                    output += chunk
            if not sent and GVNC_PASSWORD_PROMPT in output:
                if not termios.tcgetattr(slave)[3] & termios.ECHO:
                    os.write(master, (password or "").encode() + b"\n")
                    sent = True
            if popen.poll() is not None and not ready:
                break
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        os.close(master)
        os.close(slave)
    text = output.decode("utf-8", "replace")
    return ClientRun(popen.returncode, text, timed_out)


# -- Xvfb --------------------------------------------------------------------

class XwdError(ValueError):
    """An XWD file that is not a ZPixmap true-colour image this harness reads."""


def parse_xwd(data: bytes) -> np.ndarray:
    """An XWD dump (as Xvfb's ``-fbdir`` keeps it) as an (h, w, 3) RGB array.

    Reads 24/32-bit true-colour ZPixmaps in either byte order; anything
    else, or a header whose sizes do not fit the data, raises
    :class:`XwdError`.
    """
    if len(data) < XWD_HEADER_SIZE:
        raise XwdError(f"XWD header needs {XWD_HEADER_SIZE} bytes, got {len(data)}")
    (header_size, version, fmt, depth, width, height, _xoff, byte_order,
     _unit, _bit_order, _pad, bpp, bytes_per_line, _visual, red_mask,
     green_mask, blue_mask, _bits_rgb, _cmap_entries, ncolors,
     *_rest) = struct.unpack(">25I", data[:XWD_HEADER_SIZE])
    if version != 7:
        raise XwdError(f"XWD version {version}, expected 7")
    if fmt != 2:
        raise XwdError(f"XWD pixmap format {fmt}, expected 2 (ZPixmap)")
    if not XWD_HEADER_SIZE <= header_size <= XWD_HEADER_SIZE + MAX_XWD_NAME:
        raise XwdError(f"XWD header size {header_size} out of range")
    if not (0 < width <= MAX_XWD_SIDE and 0 < height <= MAX_XWD_SIDE):
        raise XwdError(f"XWD size {width}x{height} out of range")
    if bpp != 32 or depth not in (24, 32):
        raise XwdError(f"XWD {bpp} bits per pixel, depth {depth}: expected 32/24")
    if ncolors > MAX_XWD_COLORS:
        raise XwdError(f"XWD has {ncolors} colormap entries (max {MAX_XWD_COLORS})")
    if bytes_per_line < width * 4:
        raise XwdError(f"XWD line of {bytes_per_line} bytes cannot hold {width} pixels")
    offset = header_size + ncolors * 12
    if len(data) < offset + bytes_per_line * height:
        raise XwdError(f"XWD data is {len(data)} bytes, needs {offset + bytes_per_line * height}")
    masks = (red_mask, green_mask, blue_mask)
    shifts = []
    for mask in masks:
        if mask.bit_length() < 8 or mask >> (mask.bit_length() - 8) != 0xFF \
                or bin(mask).count("1") != 8:
            raise XwdError(f"XWD colour mask {mask:#x} is not 8 contiguous bits")
        shifts.append(mask.bit_length() - 8)
    rows = np.frombuffer(data, np.uint8, bytes_per_line * height, offset)
    rows = rows.reshape(height, bytes_per_line)[:, :width * 4]
    dtype = "<u4" if byte_order == 0 else ">u4"
    pixels = rows.copy().view(dtype).reshape(height, width)
    rgb = np.empty((height, width, 3), np.uint8)
    for channel, shift in enumerate(shifts):
        rgb[..., channel] = (pixels >> shift) & 0xFF
    return rgb


class Xvfb:
    """An Xvfb server whose screen can be read back (``-fbdir``).

    The display number is chosen by Xvfb itself (``-displayfd``), so
    parallel runs never race for one.
    """

    def __init__(self, test, width: int = 800, height: int = 600) -> None:
        exe = require_tool("Xvfb")
        self.fbdir = os.path.abspath(test.mktemp())
        os.makedirs(self.fbdir)
        read_fd, write_fd = os.pipe()
        try:
            self.proc = Proc(
                [exe, "-displayfd", str(write_fd), "-screen", "0",
                 f"{width}x{height}x24", "-fbdir", self.fbdir, "-nolisten", "tcp",
                 "-noreset"],
                name="Xvfb", pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        test.addCleanup(self.proc.stop)
        try:
            self.number = self._read_display(read_fd)
        finally:
            os.close(read_fd)
        if self.number is None:
            test.fail(f"Xvfb did not report a display: {self.proc.describe()}")
        self.display = f":{self.number}"
        self.width, self.height = width, height

    def _read_display(self, fd: int) -> int | None:
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in buf and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 64)
                if not chunk:
                    break
                buf += chunk
            elif self.proc.poll() is not None:
                break
        text = buf.strip()
        return int(text) if text.isdigit() else None

    def screenshot(self) -> np.ndarray:
        with open(os.path.join(self.fbdir, "Xvfb_screen0"), "rb") as f:
            return parse_xwd(f.read())


# -- TigerVNC vncviewer ------------------------------------------------------

#: vncviewer's log level: 30 (info) names the security type it chooses;
#: 100 (debug) would also draw a statistics graph over the desktop.
VNCVIEWER_LOG_LEVEL = 30

def vnc_password_file_bytes(password: str) -> bytes:
    """The 8 bytes vncpasswd writes for ``password`` (DES with the fixed key)."""
    raw = password.encode("latin-1")[:8].ljust(8, b"\0")
    enc = Cipher(TripleDES(VNCPASSWD_KEY * 3), modes.ECB()).encryptor()
    return enc.update(raw) + enc.finalize()


def vncviewer_command(xvfb: Xvfb, port: int, *, security_types: str,
                      password_file: str | None = None, x509_ca: str | None = None,
                      encoding: str | None = None, host: str = "127.0.0.1",
                      gnutls_priority: str | None = None) -> list[str]:
    """TigerVNC vncviewer, windowed near the screen's top-left, no dialogs.

    Without a window manager FLTK places the window a little off ``+0+0``,
    so callers find the picture with :func:`locate`.  ``-MenuKey=`` keeps
    the "Press F8" overlay from covering the desktop.
    ``encoding`` (Tight, ZRLE, Hextile, Raw) turns automatic selection off
    and puts that encoding first; JPEG stays off so every encoding is
    lossless and the window can be compared pixel for pixel.
    """
    argv = [require_tool("vncviewer"), "-display", xvfb.display,
            "-geometry", "+0+0", "-SecurityTypes", security_types,
            "-Log", f"*:stderr:{VNCVIEWER_LOG_LEVEL}", "-AlertOnFatalError=0",
            "-ReconnectOnError=0", "-Shared", "-RemoteResize=0", "-MenuKey=",
            "-NoJPEG", "-FullColor", "-DotWhenNoCursor=0"]
    if encoding is not None:
        argv += ["-AutoSelect=0", "-PreferredEncoding", encoding]
    if password_file is not None:
        argv += ["-PasswordFile", password_file]
    if x509_ca is not None:
        argv += ["-X509CA", x509_ca]
    if gnutls_priority is not None:
        argv += ["-GnuTLSPriority", gnutls_priority]
    argv.append(f"{host}::{port}")
    return argv


def start_vncviewer(test, argv: list[str]) -> Proc:
    """Run a vncviewer with its own empty ``$HOME`` (no saved certificates or settings)."""
    home = os.path.abspath(test.mktemp())
    os.makedirs(home)
    proc = Proc(argv, name="vncviewer", env=_child_env({"HOME": home}))
    test.addCleanup(proc.stop)
    return proc


# -- vncdotool ---------------------------------------------------------------

#: vncdotool encoding names accepted by :func:`run_vncdo`.
VNCDO_ENCODINGS = ("raw", "copyrect", "rre", "corre", "hextile", "zrle")


def run_vncdo(port: int, actions: list, *, password: str | None = None,
              encoding: str = "raw", host: str = "127.0.0.1",
              timeout: float = CLIENT_TIMEOUT) -> ClientRun:
    """Drive vncdotool's API in a child process.

    ``actions`` is a list of ``["capture", PATH]``, ``["key", NAME]``,
    ``["move", X, Y]`` and ``["click", BUTTON]``.
    The password travels on stdin, never on a command line.
    """
    if encoding not in VNCDO_ENCODINGS:
        raise ValueError(f"unknown vncdotool encoding {encoding!r}")
    spec = {"server": f"{host}::{port}", "password": password, "encoding": encoding,
            "actions": actions, "timeout": timeout}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.vncd.realclients"], cwd=ROOT, env=_child_env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        out, _ = proc.communicate(json.dumps(spec).encode(), timeout=timeout + STOP_GRACE)
        return ClientRun(proc.returncode, out[-MAX_OUTPUT:].decode("utf-8", "replace"))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return ClientRun(None, out[-MAX_OUTPUT:].decode("utf-8", "replace"), True)


def _vncdo_main() -> int:
    """Child side of :func:`run_vncdo`: read the JSON spec on stdin and act."""
    spec = json.load(sys.stdin)
    from vncdotool import api, rfb
    from vncdotool.client import VNCDoToolClient

    VNCDoToolClient.encoding = getattr(rfb.Encoding, {
        "copyrect": "COPY_RECTANGLE"}.get(spec["encoding"], spec["encoding"].upper()))
    client = api.connect(spec["server"], password=spec["password"],
                         timeout=spec["timeout"])
    try:
        for action, *args in spec["actions"]:
            if action == "capture":
                client.captureScreen(args[0])
            elif action == "key":
                client.keyPress(args[0])
            elif action == "move":
                client.mouseMove(int(args[0]), int(args[1]))
            elif action == "click":
                client.mousePress(int(args[0]))
            else:
                raise ValueError(f"unknown vncdotool action {action!r}")
    except Exception as e:  # the connection is gone: report, do not wait on it
        print(f"vncdotool: {type(e).__name__}: {e}", file=sys.stderr)
        api.shutdown()
        return 1
    client.disconnect()
    api.shutdown()
    return 0


# -- which encoding a server used --------------------------------------------

#: Server bytes a tap keeps per connection: the handshake and the first
#: update's first rectangle header come long before this (a 301x203 raw
#: rectangle is 245 KB); more would only hold pixels nobody reads.
MAX_TAP_BYTES = 4 * 1024 * 1024

#: Rectangles (pseudo ones included) read before the first real one.
MAX_TAP_RECTS = 64

#: Longest desktop name or cut text a tap skips over.
MAX_TAP_TEXT = 1024 * 1024

#: Seconds a tap waits for either side before giving up on a connection.
TAP_IDLE_TIMEOUT = CLIENT_TIMEOUT

ENCODING_NAMES = {0: "Raw", 1: "CopyRect", 2: "RRE", 4: "CoRRE", 5: "Hextile",
                  6: "Zlib", 7: "Tight", 16: "ZRLE"}


class TapError(ValueError):
    """Server bytes that are not a None-security RFB 3.8 session this tap can read."""


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes | None:
        if self.pos + n > len(self.data):
            return None
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def number(self, fmt: str) -> int | None:
        size = struct.calcsize(fmt)
        chunk = self.take(size)
        return None if chunk is None else struct.unpack(fmt, chunk)[0]


def _pseudo_payload(stream: _Bytes, encoding: int, width: int, height: int,
                    bytes_per_pixel: int) -> bool | None:
    """Skip a pseudo-rectangle's payload; ``None`` when the bytes run out."""
    if encoding in (-223, -224, -257, -258):  # DesktopSize, LastRect, QEMU pointer/keys
        return True
    if encoding == -261:  # QEMU LED state
        return stream.take(1) is not None
    if encoding == -308:  # ExtendedDesktopSize
        count = stream.number(">B")
        return count is not None and stream.take(3 + 16 * count) is not None
    if encoding == -307:  # DesktopName
        length = stream.number(">I")
        if length is not None and length > MAX_TAP_TEXT:
            raise TapError(f"desktop name of {length} bytes")
        return length is not None and stream.take(length) is not None
    if encoding == -239:  # Cursor: pixels then a 1-bit mask
        return stream.take(width * height * bytes_per_pixel
                           + (width + 7) // 8 * height) is not None
    if encoding == -240:  # XCursor
        return width * height == 0 or stream.take(6 + 2 * ((width + 7) // 8) * height) is not None
    raise TapError(f"pseudo-encoding {encoding} is not one the tap can skip")


def first_encoding(data: bytes) -> int | None:
    """The encoding of the first real rectangle the server sent, from its bytes.

    ``data`` is everything the server sent on one connection whose only
    security type was None.  ``None`` means the bytes end first; a stream
    this tap cannot follow raises :class:`TapError`.  Pixel data are never
    decoded: only pseudo-rectangles and non-update messages are skipped.
    """
    stream = _Bytes(data)
    version = stream.take(12)
    if version is None:
        return None
    if not version.startswith(b"RFB 003."):
        raise TapError(f"not an RFB 3.x greeting: {version!r}")
    count = stream.number(">B")
    if count is None:
        return None
    types = stream.take(count)
    if types is None:
        return None
    if types != b"\x01":
        raise TapError(f"security types {list(types)}: the tap reads None sessions only")
    if stream.take(4) is None:  # SecurityResult
        return None
    init = stream.take(24)
    if init is None:
        return None
    bytes_per_pixel = max(init[4] // 8, 1)
    name_length = struct.unpack(">I", init[20:24])[0]
    if name_length > MAX_TAP_TEXT:
        raise TapError(f"desktop name of {name_length} bytes")
    if stream.take(name_length) is None:
        return None
    rects = 0
    while True:
        kind = stream.number(">B")
        if kind is None:
            return None
        if kind == 0:
            header = stream.take(3)
            if header is None:
                return None
            for _ in range(struct.unpack(">xH", header)[0]):
                rects += 1
                if rects > MAX_TAP_RECTS:
                    raise TapError(f"no real rectangle among the first {MAX_TAP_RECTS}")
                rect = stream.take(12)
                if rect is None:
                    return None
                _x, _y, width, height, encoding = struct.unpack(">HHHHi", rect)
                if encoding >= 0:
                    return encoding
                if not _pseudo_payload(stream, encoding, width, height, bytes_per_pixel):
                    return None
        elif kind == 1:  # SetColourMapEntries
            header = stream.take(5)
            if header is None or stream.take(6 * struct.unpack(">xHH", header)[1]) is None:
                return None
        elif kind in (2, 150):  # Bell, EndOfContinuousUpdates
            continue
        elif kind == 3:  # ServerCutText; a negative length is Extended Clipboard
            header = stream.take(7)
            if header is None:
                return None
            length = abs(struct.unpack(">3xi", header)[0])
            if length > MAX_TAP_TEXT:
                raise TapError(f"cut text of {length} bytes")
            if stream.take(length) is None:
                return None
        elif kind == 248:  # ServerFence
            header = stream.take(8)
            if header is None or stream.take(header[7]) is None:
                return None
        else:
            raise TapError(f"server message type {kind} before the first update")


class RfbTap:
    """A loopback relay in front of a server that keeps what the server sends.

    Clients connect to :attr:`port`; each connection is relayed to the
    server's port in a thread, and the server's first
    :data:`MAX_TAP_BYTES` bytes are kept in :attr:`streams` (one entry per
    connection, in order).  Stopped by a cleanup on the test.
    """

    def __init__(self, test, target_port: int, host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.bind((host, listen_port))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.streams: list[bytearray] = []
        self._stop = threading.Event()
        self._threads = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        test.addCleanup(self.stop)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            stream = bytearray()
            self.streams.append(stream)
            thread = threading.Thread(target=self._relay, args=(client, stream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket, stream: bytearray) -> None:
        try:
            server = socket.create_connection(self.target, timeout=TAP_IDLE_TIMEOUT)
        except OSError:
            client.close()
            return
        client.settimeout(TAP_IDLE_TIMEOUT)
        peers = {client: server, server: client}
        deadline = time.monotonic() + TAP_IDLE_TIMEOUT
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    deadline = time.monotonic() + TAP_IDLE_TIMEOUT
                    if sock is server and len(stream) < MAX_TAP_BYTES:
                        stream += data[:MAX_TAP_BYTES - len(stream)]
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def encodings(self) -> list[int | None]:
        """The first real rectangle's encoding on each connection so far."""
        return [first_encoding(bytes(s)) for s in list(self.streams)]

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)
        for thread in self._threads:
            thread.join(5)


if __name__ == "__main__":
    sys.exit(_vncdo_main())


class PictureServerMixin:
    """For real-client test cases: run QEMU 7.2 or vncd with one ``-vnc`` display.

    The case sets ``server`` (``"qemu"`` or ``"vncd"``), ``dir`` and
    ``picture_path`` (the PNG vncd shows).  QEMU gets a second, plain
    display (``self.plain``) so its screen can be captured without any
    security layer as the reference picture.
    """

    server = ""

    def start_display(self, vnc_options: str, objects: tuple[str, ...] = ()) -> int:
        """Start the server with ``-vnc 127.0.0.1:N,<options>``; returns N.

        When another test (a parallel trial worker) takes the port between
        the check and the server's bind, the server starts again on other
        displays (a few times)."""
        for attempt in range(PORT_RETRIES):
            display = free_display()
            spec = f"127.0.0.1:{display}" + (f",{vnc_options}" if vnc_options else "")
            args = [*objects, "-vnc", spec]
            ports = [5900 + display]
            if self.server == "qemu":
                self.plain = free_display()
                while self.plain == display:
                    self.plain = free_display()
                args += ["-vnc", f"127.0.0.1:{self.plain},id=plain"]
                ports.append(5900 + self.plain)
                argv = qemu_command(args)
            else:
                argv = vncd_command(args + ["-screen", f"image,file={self.picture_path}"])
            proc = launch(argv, ports, name=self.server)
            self.addCleanup(proc.stop)
            if proc.poll() is None:
                return display
            if "Address already in use" not in proc.output() or attempt == PORT_RETRIES - 1:
                self.fail(f"{self.server} exited before listening: {proc.describe()}")
        raise AssertionError("unreachable")

    def expected(self) -> np.ndarray:
        """What the server shows: vncd's picture, or QEMU's screen captured in the clear."""
        if self.server == "vncd":
            return read_png(self.picture_path)
        reference = os.path.join(self.dir, "reference.png")
        run = gvnccapture("127.0.0.1", self.plain, reference)
        self.assertTrue(run.ok, f"reference capture failed: {run.output}")
        return read_png(reference)


@dataclass
class X509PictureServer:
    """A vncd process serving a known picture with x509 TLS (see :func:`start_x509_vncd`)."""

    proc: Proc
    display: int
    port: int
    #: A client credentials directory (CA and a client certificate) it accepts.
    client_dir: str
    picture: np.ndarray


def start_x509_vncd(test, base: str, label: str, *, verify_peer: bool = False,
                    extra: tuple[str, ...] = ()) -> X509PictureServer:
    """Start ``python -m vncd`` with fresh x509 credentials under ``base``, showing a
    picture on one display (``verify-peer=on`` when asked); ``extra`` arguments follow."""
    from tests import certgen

    require_vncd()
    ca = certgen.ca(f"{label} CA")
    server_dir = certgen.write_dir(
        os.path.join(base, "server"), ca=[ca],
        server=certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"]))
    client_dir = certgen.write_dir(os.path.join(base, "client"), ca=[ca],
                                   client=certgen.client(ca, f"{label} client"))
    picture = make_picture()
    png = write_png(os.path.join(base, "picture.png"), picture)
    display = free_display()
    port = 5900 + display
    verify = ",verify-peer=on" if verify_peer else ""
    proc = start_server(test, [
        sys.executable, "-m", "vncd",
        "-object", f"tls-creds-x509,id=tls0,dir={server_dir},endpoint=server{verify}",
        "-vnc", f"127.0.0.1:{display},tls-creds=tls0",
        "-screen", f"image,file={png}", *extra], [port], name=f"vncd ({label})")
    return X509PictureServer(proc, display, port, client_dir, picture)

