"""Access control: client address allow-lists and HTTP Basic authentication.

The web layer calls :meth:`AccessPolicy.check` once per request (before routing) and turns a
refusing :class:`Decision` into a short 401/403 response plus one log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from werkzeug.security import check_password_hash, generate_password_hash

from .logtext import log_safe

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# OWASP's 2023 figure for PBKDF2-HMAC-SHA256. pbkdf2 rather than werkzeug's default scrypt:
# scrypt (n=2**15, r=8) needs 32 MiB of RAM per verification, which on a 1 GiB Pi 3 that is
# also encoding video is a real cost when several clients authenticate at once; pbkdf2 is
# CPU-only (~0.2 s on a desktop core, ~2 s on a Pi 3) and the success cache below makes it a
# once-per-client cost.
PBKDF2_ITERATIONS = 600_000
PBKDF2_METHOD = f"pbkdf2:sha256:{PBKDF2_ITERATIONS}"

REALM = "snapshot-stream"
WWW_AUTHENTICATE = f'Basic realm="{REALM}", charset="UTF-8"'

# Paths that skip Basic auth (never the allow-list): provisioning waits on /healthz and must not
# need the password.
AUTH_EXEMPT_PATHS = frozenset({"/healthz"})

# How many distinct verified (and, separately, refused) credentials are remembered. A camera has
# a handful of viewers; 32 leaves room without letting a flood of guesses grow memory.
CACHE_SIZE = 32

# Longer Authorization headers are refused unparsed: no legitimate user:password gets near this,
# and it bounds the work an attacker can make us do per request.
MAX_AUTHORIZATION_LENGTH = 4096

# Loopback is always allowed so local health checks and the provisioning play keep working
# whatever --allow says.
_LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_UINT_RE = re.compile(r"[0-9]+")
_SPLIT_RE = re.compile(r"[,\s]+")


def hash_password(password: str) -> str:
    """Return a werkzeug-format hash of ``password`` (``pbkdf2:sha256:600000$salt$hex``)."""
    return generate_password_hash(password, method=PBKDF2_METHOD)


def _validate_hash(password_hash: str) -> None:
    """Raise ValueError unless ``password_hash`` is a werkzeug pbkdf2/scrypt hash we can verify.

    Checked up front because werkzeug's check_password_hash raises (or silently returns False)
    on a malformed hash at request time, which would lock everyone out with no clear cause.
    """
    parts = password_hash.split("$")
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            "--auth-hash must look like 'pbkdf2:sha256:600000$SALT$HEX' "
            "(create it with `snapshot-stream hash-password`)"
        )
    method, _salt, digest = parts
    if not _HEX_RE.fullmatch(digest):
        raise ValueError("--auth-hash: the part after the second '$' must be hexadecimal")
    name, *args = method.split(":")
    if name == "pbkdf2":
        if len(args) > 2:
            raise ValueError(f"--auth-hash: bad pbkdf2 parameters {method!r}")
        hash_name = args[0] if args else "sha256"
        if len(args) == 2 and (not _UINT_RE.fullmatch(args[1]) or int(args[1]) < 1):
            raise ValueError(f"--auth-hash: bad pbkdf2 iteration count in {method!r}")
        try:
            # One iteration is microseconds and proves hashlib knows the digest name.
            hashlib.pbkdf2_hmac(hash_name, b"", b"", 1)
        except ValueError:
            raise ValueError(f"--auth-hash: unsupported pbkdf2 digest {hash_name!r}") from None
    elif name == "scrypt":
        if args and (len(args) != 3 or not all(_UINT_RE.fullmatch(a) and int(a) > 0 for a in args)):
            raise ValueError(f"--auth-hash: bad scrypt parameters {method!r}")
        # hashlib only raises at verification time, i.e. on every request; catch it now.
        if args and (int(args[0]) < 2 or int(args[0]) & (int(args[0]) - 1)):
            raise ValueError(f"--auth-hash: scrypt n must be a power of 2 in {method!r}")
        if not hasattr(hashlib, "scrypt"):
            raise ValueError("--auth-hash: this Python's OpenSSL has no scrypt; use pbkdf2")
    else:
        raise ValueError(f"--auth-hash: unknown hash method {name!r} (expected pbkdf2 or scrypt)")


@dataclass(frozen=True)
class AuthResult:
    """Outcome of one Basic authentication attempt; ``reason`` is empty on success."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class PendingCheck:
    """Credentials not seen before: the slow verification is still to be done."""

    key: bytes
    user: str
    password: str = field(repr=False)


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """Decode ``Basic base64(user:password)``; None if absent or malformed. Never raises."""
    if not authorization or len(authorization) > MAX_AUTHORIZATION_LENGTH:
        return None
    words = authorization.split(None, 1)  # any run of spaces/tabs separates scheme and token
    if len(words) != 2 or words[0].lower() != "basic":
        return None
    token = words[1].strip()
    try:
        raw = token.encode("ascii")
        # Some clients drop the '=' padding; restoring it costs nothing and is unambiguous.
        raw += b"=" * (-len(raw) % 4)
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    return user, password


class _DigestLRU:
    """Bounded LRU set of digests (not thread-safe; the caller holds the lock)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def add(self, key: bytes) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class BasicAuth:
    """HTTP Basic authentication against one user and one werkzeug password hash.

    pbkdf2 is slow on purpose, yet browsers and NVRs resend the header with every snapshot, so
    outcomes are cached by HMAC-SHA256(process-random key, "user:password"): the cache holds
    neither the password nor an unkeyed hash of it. Refusals are cached too (as refusals) so a
    misconfigured NVR retrying a wrong password at frame rate cannot pin a CPU core; with a fixed
    hash the outcome for given credentials never changes, so both caches stay correct.
    """

    def __init__(self, user: str, password_hash: str, cache_size: int = CACHE_SIZE) -> None:
        if not user:
            raise ValueError("--auth-user must not be empty")
        if ":" in user:
            # RFC 7617: the user-id cannot contain a colon, the first colon ends it.
            raise ValueError("--auth-user must not contain ':'")
        _validate_hash(password_hash)
        self.user = user
        self._user_bytes = user.encode("utf-8")
        self._hash = password_hash
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # Serialises the slow path: N clients arriving together with the same header pay for one
        # verification, and a guessing attacker gets at most one core.
        self._verify_lock = threading.Lock()
        self._good = _DigestLRU(cache_size)
        self._bad = _DigestLRU(cache_size)

    def check(self, authorization: str | None) -> bool:
        """True when the Authorization header carries this user's correct password."""
        return self.authenticate(authorization).ok

    def authenticate(self, authorization: str | None) -> AuthResult:
        """Like :meth:`check`, with a reason for the log when refused."""
        found = self.lookup(authorization)
        if isinstance(found, AuthResult):
            return found
        with self._verify_lock:
            return self.verify(found)

    def lookup(self, authorization: str | None) -> AuthResult | PendingCheck:
        """The outcome if it costs nothing (no header, malformed, cached), else what to verify."""
        if not authorization or not authorization.strip():
            return AuthResult(False, "missing credentials")
        parsed = parse_basic(authorization)
        if parsed is None:
            return AuthResult(False, "malformed Authorization header")
        user, password = parsed
        key = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        cached = self._cached(key)
        if cached is None:
            return PendingCheck(key, user, password)
        return AuthResult(True) if cached else self._refused(user)

    def verify(self, pending: PendingCheck) -> AuthResult:
        """Run the slow check (unless another caller just did) and cache its outcome."""
        cached = self._cached(pending.key)
        if cached is None:
            cached = self._verify(pending.user, pending.password)
            with self._lock:
                (self._good if cached else self._bad).add(pending.key)
        return AuthResult(True) if cached else self._refused(pending.user)

    @staticmethod
    def _refused(user: str) -> AuthResult:
        return AuthResult(False, f"bad credentials for user '{log_safe(user)}'")

    def _cached(self, key: bytes) -> bool | None:
        with self._lock:
            if key in self._good:
                return True
            if key in self._bad:
                return False
        return None

    def _verify(self, user: str, password: str) -> bool:
        # Both comparisons always run, so timing does not reveal whether the user name was right.
        user_ok = hmac.compare_digest(user.encode("utf-8"), self._user_bytes)
        try:
            password_ok = check_password_hash(self._hash, password)
        except ValueError:  # cannot happen after _validate_hash, but never 500 on a request
            log.exception("password hash verification failed")
            password_ok = False
        return user_ok and password_ok


def parse_networks(spec: str) -> list[IPNetwork]:
    """Parse ``--allow``: comma/space separated CIDRs or single addresses.

    Host bits are masked (``192.168.1.7/24`` means ``192.168.1.0/24``), which is what people
    mean when they paste their own address with the LAN prefix.
    """
    networks: list[IPNetwork] = []
    for entry in _SPLIT_RE.split(spec.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"--allow: {entry!r} is not a network") from None
    return networks


@dataclass(frozen=True)
class Decision:
    """What to do with a request: ``status`` None lets it through, else answer with it.

    ``reason`` is for the log line (it may quote the client); ``cause`` is a fixed short text
    that groups refusals for the summarised log.
    """

    status: int | None
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    cause: str = field(default="", compare=False)

    @property
    def allowed(self) -> bool:
        return self.status is None


ALLOW = Decision(None)


def _parse_remote(remote_addr: str) -> tuple[IPAddress, ...]:
    """The peer address, plus its IPv4 form when it is IPv4-mapped; () when unparseable."""
    text = remote_addr.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return ()
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; match them against IPv4 rules
    # (the IPv4 form first so it is the one named in log lines).
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return (addr.ipv4_mapped, addr)
    return (addr,)


class AccessPolicy:
    """The allow-list (loopback always allowed) followed by optional Basic auth."""

    def __init__(self, allow: Sequence[IPNetwork] = (), auth: BasicAuth | None = None) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(allow)
        self.auth = auth

    @property
    def active(self) -> bool:
        """False when every request is allowed (lets the web layer skip the hook entirely)."""
        return bool(self.allow) or self.auth is not None

    def address_decision(self, remote_addr: str) -> Decision:
        """The allow-list's verdict on the client address alone (cheap)."""
        if not self.allow:
            return ALLOW  # no allow-list: the address is not consulted at all
        remote_addr = remote_addr if isinstance(remote_addr, str) else ""
        forms = _parse_remote(remote_addr)
        if not forms:
            # Cannot prove the peer is in the list (e.g. a unix socket peer): refuse.
            return Decision(
                403,
                f"client address '{log_safe(remote_addr)}' is not an IP address",
                cause="address not an IP",
            )
        if any(a in n for a in forms for n in _LOOPBACK_NETWORKS + self.allow):
            return ALLOW
        return Decision(403, f"client {forms[0]} not in allow-list", cause="not in allow-list")

    def needs_auth(self, path: str) -> bool:
        return self.auth is not None and path not in AUTH_EXEMPT_PATHS

    def may_write(self, remote_addr: str) -> bool:
        """Whether a request that reached the app may change settings (POST /controls).

        With Basic auth configured every such request was authenticated by the server; without
        it, only loopback and the --allow networks may write (reading stays open to all).
        """
        if self.auth is not None:
            return True
        forms = _parse_remote(remote_addr if isinstance(remote_addr, str) else "")
        return any(a in n for a in forms for n in _LOOPBACK_NETWORKS + self.allow)

    def check(self, remote_addr: str, authorization: str | None, path: str) -> Decision:
        """Decide one request (running the slow verification here); never raises."""
        decision = self.address_decision(remote_addr)
        if decision is not ALLOW or self.auth is None or not self.needs_auth(path):
            return decision
        return auth_decision(self.auth.authenticate(authorization))


def auth_decision(result: AuthResult) -> Decision:
    """The Decision for an authentication outcome (401 with the challenge when refused)."""
    if result.ok:
        return ALLOW
    cause = result.reason.split(" for user ", 1)[0]  # the user name is the client's text
    return Decision(401, result.reason, (("WWW-Authenticate", WWW_AUTHENTICATE),), cause)


_Job = tuple[PendingCheck, list[Callable[[AuthResult], None]]]


class Verifier:
    """Verifies passwords in one thread, fairly between client addresses.

    pbkdf2 is slow on purpose, so it never runs on the event loop and never on more than one
    core. Each address has its own queue and the thread takes one job per address in turn,
    and jobs from addresses with no failed login lately (``suspect`` False) go first: a flood
    of guesses, from any number of addresses, delays a genuine login by at most the check in
    progress. Checks of the same credentials share one run. ``submit`` refuses (returns False)
    once an address has PER_ADDRESS checks waiting.
    """

    PER_ADDRESS = 4

    def __init__(self, auth: BasicAuth) -> None:
        self.auth = auth
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # address -> queue of (pending check, callbacks); the order is the round robin.
        self._queues: OrderedDict[str, list[_Job]] = OrderedDict()
        self._suspects: set[str] = set()  # addresses with a failed login lately
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="auth-verifier", daemon=True)
        self._thread.start()

    def submit(
        self,
        address: str,
        pending: PendingCheck,
        done: Callable[[AuthResult], None],
        suspect: bool = False,
    ) -> bool:
        """Verify ``pending`` for ``address``; ``done(result)`` runs in the verifier thread."""
        with self._lock:
            for queue in self._queues.values():
                for job, callbacks in queue:
                    if job.key == pending.key:
                        callbacks.append(done)
                        return True
            queue = self._queues.setdefault(address, [])
            if len(queue) >= self.PER_ADDRESS:
                return False
            queue.append((pending, [done]))
            if suspect:
                self._suspects.add(address)
            self._wake.notify()
        return True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queues and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                address = next(
                    (a for a in self._queues if a not in self._suspects), next(iter(self._queues))
                )
                queue = self._queues[address]
                pending, callbacks = queue[0]
            try:
                result = self.auth.verify(pending)
            except Exception:  # never leave a client waiting
                log.exception("password verification failed")
                result = AuthResult(False, "verification error")
            with self._lock:
                # An address whose check failed waits behind the others from now on.
                if result.ok:
                    self._suspects.discard(address)
                else:
                    self._suspects.add(address)
                queue.pop(0)
                # The address goes to the back of the round robin (or leaves it).
                del self._queues[address]
                if queue:
                    self._queues[address] = queue
                else:
                    # Bounded memory: the throttle remembers failures for later submits.
                    self._suspects.discard(address)
                done = list(callbacks)
            for callback in done:
                callback(result)
