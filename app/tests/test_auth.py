"""Unit tests for snapshot_stream.auth (no server needed)."""

from __future__ import annotations

import base64
import ipaddress
import threading

import pytest
from conftest import local_non_loopback_ipv4
from werkzeug.security import check_password_hash, generate_password_hash

from snapshot_stream import auth, logtext
from snapshot_stream.auth import (
    PBKDF2_ITERATIONS,
    WWW_AUTHENTICATE,
    AccessPolicy,
    BasicAuth,
    Decision,
    hash_password,
    parse_basic,
    parse_networks,
)

# Few iterations keep the suite fast; the production count is tested once in test_hash_password.
FAST_HASH = generate_password_hash("s3cret:with:colons", method="pbkdf2:sha256:1000")
USER = "viewer"
PASSWORD = "s3cret:with:colons"


def basic(user: str, password: str, scheme: str = "Basic") -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"{scheme} {token}"


@pytest.fixture
def basic_auth() -> BasicAuth:
    return BasicAuth(USER, FAST_HASH)


class CountingAuth(BasicAuth):
    """Counts the slow verifications so cache behaviour is observable without timing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.verifications = 0

    def _verify(self, user: str, password: str) -> bool:
        self.verifications += 1
        return super()._verify(user, password)


# --- hash_password / construction -------------------------------------------------------------


def test_hash_password_uses_pbkdf2_with_explicit_iterations() -> None:
    hashed = hash_password("hunter2")
    assert hashed.startswith(f"pbkdf2:sha256:{PBKDF2_ITERATIONS}$")
    assert check_password_hash(hashed, "hunter2")
    assert not check_password_hash(hashed, "hunter3")
    assert hash_password("hunter2") != hashed  # salted
    BasicAuth("u", hashed)  # the CLI's own output is accepted


def test_scrypt_hashes_are_accepted() -> None:
    hashed = generate_password_hash("pw", method="scrypt:1024:8:1")
    assert BasicAuth("u", hashed).check(basic("u", "pw"))


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "plaintext-password",
        "pbkdf2:sha256:1000$salt",
        "pbkdf2:sha256:1000$$abcdef",
        "pbkdf2:sha256:1000$salt$not-hex",
        "pbkdf2:sha256:lots$salt$abcdef",
        "pbkdf2:sha256:0$salt$abcdef",
        "pbkdf2:nosuchdigest:1000$salt$abcdef",
        "pbkdf2:a:b:c$salt$abcdef",
        "scrypt:1:2$salt$abcdef",
        "scrypt:1000:8:1$salt$abcdef",  # n not a power of 2
        "pbkdf2:sha256:\u00b2$salt$abcdef",  # a digit to str.isdigit(), not to int()
        "md5$salt$abcdef",
        "bcrypt$2b$12$abcdefabcdefabcdefabcdef",
    ],
)
def test_malformed_hash_is_rejected_at_construction(bad_hash: str) -> None:
    with pytest.raises(ValueError, match="--auth-hash"):
        BasicAuth("u", bad_hash)


@pytest.mark.parametrize("bad_user", ["", "a:b"])
def test_bad_user_is_rejected(bad_user: str) -> None:
    with pytest.raises(ValueError, match="--auth-user"):
        BasicAuth(bad_user, FAST_HASH)


# --- header parsing / checking -------------------------------------------------------------------


def test_right_credentials(basic_auth: BasicAuth) -> None:
    assert basic_auth.check(basic(USER, PASSWORD))


@pytest.mark.parametrize(
    "header",
    [
        basic(USER, PASSWORD, scheme="basic"),
        basic(USER, PASSWORD, scheme="BASIC"),
        "  " + basic(USER, PASSWORD).replace(" ", "    ") + "  ",
        basic(USER, PASSWORD).rstrip("="),  # unpadded base64
        basic(USER, PASSWORD).replace(" ", "\t"),
    ],
)
def test_tolerated_header_variants(basic_auth: BasicAuth, header: str) -> None:
    assert basic_auth.check(header)


def test_wrong_user(basic_auth: BasicAuth) -> None:
    result = basic_auth.authenticate(basic("intruder", PASSWORD))
    assert not result.ok
    assert result.reason == "bad credentials for user 'intruder'"


def test_wrong_password(basic_auth: BasicAuth) -> None:
    assert not basic_auth.check(basic(USER, "s3cret"))
    assert not basic_auth.check(basic(USER, ""))
    assert not basic_auth.check(basic(USER, PASSWORD + "x"))


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(basic_auth: BasicAuth, header: str | None) -> None:
    result = basic_auth.authenticate(header)
    assert result == auth.AuthResult(False, "missing credentials")


@pytest.mark.parametrize(
    "header",
    [
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),  # no scheme
        "Basic",
        "Basic    ",
        "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "Digest username=viewer",
        "Basic !!!not-base64!!!",
        "Basic dmlld2Vy",  # "viewer": no colon
        "Basic " + base64.b64encode(b"viewer:\xff\xfe").decode(),  # not UTF-8
        "Basic " + base64.b64encode(b"\xc3(:pw").decode(),  # invalid UTF-8 in the user
        "Basic d\u00e9j\u00e0",  # non-ASCII token (WSGI hands headers over as latin-1)
        "Basic " + "A" * 10_000,  # absurdly long
        "Basic a",  # impossible base64 length
    ],
)
def test_malformed_headers_are_refused_without_raising(basic_auth: BasicAuth, header: str) -> None:
    result = basic_auth.authenticate(header)
    assert not result.ok
    assert result.reason == "malformed Authorization header"
    assert parse_basic(header) is None


def test_parse_basic_splits_at_first_colon() -> None:
    assert parse_basic(basic("u", "a:b:c")) == ("u", "a:b:c")
    assert parse_basic(basic("", "")) == ("", "")
    assert parse_basic(basic("j\u00fcrgen", "p\u00e4ss")) == ("j\u00fcrgen", "p\u00e4ss")


def test_utf8_credentials() -> None:
    hashed = generate_password_hash("p\u00e4ss\u2603", method="pbkdf2:sha256:1000")
    checker = BasicAuth("j\u00fcrgen", hashed)
    assert checker.check(basic("j\u00fcrgen", "p\u00e4ss\u2603"))
    assert not checker.check(basic("jurgen", "p\u00e4ss\u2603"))


def test_reason_does_not_let_the_client_inject_log_lines(basic_auth: BasicAuth) -> None:
    result = basic_auth.authenticate(basic("evil\nINFO fake line 'x'", "pw"))
    assert "\n" not in result.reason
    assert result.reason.startswith("bad credentials for user 'evil\\nINFO")


def test_log_safe() -> None:
    assert logtext.log_safe("/stream") == "/stream"
    assert logtext.log_safe("a\r\nb\x1b[31m") == "a\\r\\nb\\x1b[31m"
    assert logtext.log_safe("x" * 100, limit=10) == "x" * 10 + "..."


# --- cache ---------------------------------------------------------------------------------------


def test_success_is_cached() -> None:
    checker = CountingAuth(USER, FAST_HASH)
    header = basic(USER, PASSWORD)
    assert checker.check(header)
    assert checker.check(header)
    assert checker.check("basic   " + header.split()[1])  # same credentials, other spelling
    assert checker.verifications == 1


def test_wrong_password_after_right_one_still_fails() -> None:
    checker = CountingAuth(USER, FAST_HASH)
    assert checker.check(basic(USER, PASSWORD))
    assert not checker.check(basic(USER, "guess"))
    assert not checker.check(basic("other", PASSWORD))
    assert checker.check(basic(USER, PASSWORD))
    assert checker.verifications == 3


def test_failures_are_cached_as_failures() -> None:
    checker = CountingAuth(USER, FAST_HASH)
    for _ in range(5):
        assert not checker.check(basic(USER, "wrong"))
    assert checker.verifications == 1


def test_cache_is_bounded_and_keeps_recent_entries() -> None:
    hashed = generate_password_hash("pw", method="pbkdf2:sha256:1")
    checker = CountingAuth("u", hashed, cache_size=4)
    good = basic("u", "pw")
    assert checker.check(good)
    for i in range(20):  # a flood of guesses must not evict the good entry into a re-verify...
        assert not checker.check(basic("u", f"guess{i}"))
    assert len(checker._good) == 1
    assert len(checker._bad) == 4  # ...and must not grow memory
    before = checker.verifications
    assert checker.check(good)
    assert checker.verifications == before


def test_cache_holds_no_password() -> None:
    checker = BasicAuth(USER, FAST_HASH)
    assert checker.check(basic(USER, PASSWORD))
    (digest,) = list(checker._good._items)
    assert len(digest) == 32
    assert PASSWORD.encode() not in digest
    assert PASSWORD not in repr(vars(checker))


def test_concurrent_checks_verify_once() -> None:
    checker = CountingAuth(USER, FAST_HASH)
    header = basic(USER, PASSWORD)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(checker.check(header))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    assert checker.verifications == 1


# --- networks ------------------------------------------------------------------------------------


def test_parse_networks() -> None:
    nets = parse_networks("10.0.0.0/8, 192.168.1.7/24 2001:db8::/32,,  fe80::1 ,172.16.0.5")
    assert nets == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("fe80::1/128"),
        ipaddress.ip_network("172.16.0.5/32"),
    ]
    assert parse_networks("") == []
    assert parse_networks("  ") == []


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "10.0.0", "::1/129", "1.2.3.4/-1"])
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_networks(f"10.0.0.0/8,{bad}")
    assert str(excinfo.value) == f"--allow: '{bad}' is not a network"


# --- AccessPolicy --------------------------------------------------------------------------------


def lan_policy(with_auth: bool = False) -> AccessPolicy:
    return AccessPolicy(
        parse_networks("192.168.1.0/24,2001:db8::/32"),
        BasicAuth(USER, FAST_HASH) if with_auth else None,
    )


@pytest.mark.parametrize(
    "addr",
    [
        "192.168.1.20",
        "2001:db8::5",
        "::ffff:192.168.1.20",
        "[2001:db8::5]",
        "127.0.0.1",
        "127.9.9.9",
    ],
)
def test_allowed_addresses(addr: str) -> None:
    assert lan_policy().check(addr, None, "/stream") == Decision(None)


@pytest.mark.parametrize("addr", ["::1", "::ffff:127.0.0.1", "127.0.0.1"])
def test_loopback_always_allowed(addr: str) -> None:
    policy = AccessPolicy(parse_networks("10.0.0.0/8"))
    assert policy.check(addr, None, "/stream").allowed


@pytest.mark.parametrize(
    ("addr", "shown"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db9::1", "2001:db9::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_refused_addresses(addr: str, shown: str) -> None:
    decision = lan_policy().check(addr, basic(USER, PASSWORD), "/stream")
    assert decision == Decision(403, f"client {shown} not in allow-list")


@pytest.mark.parametrize("addr", ["", "garbage", "999.1.1.1", "10.0.0.1:8080", None, "a\nb"])
def test_garbage_remote_addr_is_refused_without_raising(addr: str) -> None:
    decision = lan_policy().check(addr, None, "/healthz")  # type: ignore[arg-type]
    assert decision.status == 403
    assert "\n" not in decision.reason


def test_empty_allow_list_allows_everyone() -> None:
    policy = AccessPolicy()
    assert not policy.active
    for addr in ("10.1.2.3", "8.8.8.8", "2001:db9::1", "garbage"):
        assert policy.check(addr, None, "/stream").allowed


def test_allow_list_then_auth() -> None:
    policy = lan_policy(with_auth=True)
    assert policy.active
    assert policy.check("192.168.1.5", basic(USER, PASSWORD), "/stream").allowed

    missing = policy.check("192.168.1.5", None, "/stream")
    assert missing.status == 401
    assert missing.reason == "missing credentials"
    assert missing.headers == (("WWW-Authenticate", WWW_AUTHENTICATE),)
    assert WWW_AUTHENTICATE == 'Basic realm="snapshot-stream", charset="UTF-8"'

    wrong = policy.check("192.168.1.5", basic("x", "nope"), "/snapshot.jpg")
    assert (wrong.status, wrong.reason) == (401, "bad credentials for user 'x'")

    malformed = policy.check("192.168.1.5", "Bearer abc", "/")
    assert (malformed.status, malformed.reason) == (401, "malformed Authorization header")

    # The allow-list comes first: right credentials from outside are still 403.
    assert policy.check("10.9.9.9", basic(USER, PASSWORD), "/stream").status == 403


def test_healthz_exempt_from_auth_not_from_allow_list() -> None:
    policy = lan_policy(with_auth=True)
    assert policy.check("192.168.1.5", None, "/healthz").allowed
    assert policy.check("::1", None, "/healthz").allowed
    assert policy.check("10.9.9.9", None, "/healthz").status == 403
    # Only the exact path: /metrics and look-alikes still need credentials.
    for path in ("/metrics", "/healthz/../stream", "/healthzx", "/stream"):
        assert policy.check("192.168.1.5", None, path).status == 401


def test_auth_only_policy_allows_any_address_with_credentials() -> None:
    policy = AccessPolicy(auth=BasicAuth(USER, FAST_HASH))
    assert policy.check("8.8.8.8", basic(USER, PASSWORD), "/stream").allowed
    assert policy.check("8.8.8.8", None, "/stream").status == 401


# --- the real server (H1's streamer process) -----------------------------------------------------


def refused_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " refused (" in line]


def test_real_server_basic_auth(spawn) -> None:
    import requests

    proc = spawn("--source", "synthetic", "--auth-user", USER, "--auth-hash", FAST_HASH)
    url = proc.url
    good = (USER, PASSWORD)

    health = requests.get(url + "/healthz", timeout=5)
    assert health.status_code in (200, 503)  # exempt from auth: never 401
    assert "WWW-Authenticate" not in health.headers

    refused = 0
    for path in ("/snapshot.jpg", "/stream", "/", "/metrics", "/?action=stream"):
        resp = requests.get(url + path, timeout=5)
        refused += 1
        assert resp.status_code == 401, path
        assert resp.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
        assert PASSWORD not in resp.text

    for headers in (
        {"Authorization": basic(USER, "wrong")},
        {"Authorization": basic("mallory", PASSWORD)},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic " + base64.b64encode(b"viewer:\xff").decode()},
    ):
        resp = requests.get(url + "/snapshot.jpg", headers=headers, timeout=5)
        refused += 1
        assert resp.status_code == 401, headers

    snap = requests.get(url + "/snapshot.jpg", auth=good, timeout=5)
    assert snap.status_code == 200
    assert snap.headers["Content-Type"] == "image/jpeg"
    assert snap.content[:2] == b"\xff\xd8"

    with requests.get(url + "/stream", auth=good, stream=True, timeout=5) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert b"Content-Length:" in next(stream.iter_content(4096))

    metrics = requests.get(url + "/metrics", auth=good, timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "snapshot_stream_frames_captured_total" in metrics.text

    log = proc.log()
    assert "Traceback" not in log
    lines = refused_lines(log)
    # One line per cause (issue 12: repeats within 10 s are counted and summarised later).
    assert refused == 10
    assert len(lines) == 3, lines
    assert any("missing credentials" in ln for ln in lines)
    assert any("bad credentials for user 'viewer'" in ln for ln in lines)
    assert any("malformed Authorization header" in ln for ln in lines)
    assert not any(PASSWORD in ln for ln in log.splitlines())


def test_real_server_refusal_log_cannot_be_forged(spawn) -> None:
    """The refusal line echoes the path; a percent-encoded newline must not start a new line."""
    import requests

    proc = spawn("--source", "synthetic", "--auth-user", USER, "--auth-hash", FAST_HASH)
    resp = requests.get(proc.url + "/x%0d%0a2026-01-01 INFO forged%0a", timeout=5)
    assert resp.status_code == 401
    log = proc.log()
    assert len(refused_lines(log)) == 1
    assert not any(ln.startswith("2026-01-01 INFO forged") for ln in log.splitlines()), log


def test_real_server_allow_list(spawn) -> None:
    import requests

    outside = local_non_loopback_ipv4()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    # Bound to loopback and to the machine's other address: connecting to the latter makes the
    # peer address that non-loopback address.
    proc = spawn(
        "--source", "synthetic", "--host", f"127.0.0.1,{outside}", "--allow", "198.51.100.0/24"
    )
    assert requests.get(proc.url + "/healthz", timeout=5).status_code in (200, 503)  # loopback
    for path in ("/healthz", "/snapshot.jpg", "/stream", "/nonexistent"):
        resp = requests.get(f"http://{outside}:{proc.port}{path}", timeout=5)
        assert resp.status_code == 403, path
        assert "WWW-Authenticate" not in resp.headers
    log = proc.log()
    assert "Traceback" not in log
    lines = refused_lines(log)
    assert len(lines) == 1, lines  # the other three are summarised (issue 12)
    assert all(f"client {outside} not in allow-list" in ln for ln in lines)

    proc2 = spawn(
        "--source", "synthetic", "--host", f"127.0.0.1,{outside}", "--allow", f"{outside}/32"
    )
    snap = requests.get(f"http://{outside}:{proc2.port}/snapshot.jpg", timeout=5)
    assert snap.status_code == 200


def test_real_server_dual_stack_mapped_address(spawn) -> None:
    """On a '::' socket IPv4 peers arrive as ::ffff:a.b.c.d and must match IPv4 rules."""
    import socket

    import requests

    outside = local_non_loopback_ipv4()
    if outside is None or not socket.has_ipv6:
        pytest.skip("needs IPv6 and a non-loopback IPv4 address")
    try:
        proc = spawn("--source", "synthetic", "--host", "::", "--allow", f"{outside}/32")
    except AssertionError as exc:  # e.g. IPv6 disabled in this container
        pytest.skip(f"cannot bind '::': {exc}")
    ok = requests.get(f"http://{outside}:{proc.port}/snapshot.jpg", timeout=5)
    assert ok.status_code == 200
    assert requests.get(f"http://[::1]:{proc.port}/healthz", timeout=5).status_code in (200, 503)

    refusing = spawn("--source", "synthetic", "--host", "::", "--allow", "198.51.100.0/24")
    resp = requests.get(f"http://{outside}:{refusing.port}/snapshot.jpg", timeout=5)
    assert resp.status_code == 403
    assert f"client {outside} not in allow-list" in refusing.log()
    assert "Traceback" not in refusing.log()


def test_real_server_does_not_leak_upstream_credentials(spawn) -> None:
    """/healthz needs no password, so it must not show the upstream camera's password."""
    import requests

    proc = spawn("--source", "http://cam:s3cr3t-upstream@127.0.0.1:9/stream")
    health = requests.get(proc.url + "/healthz", timeout=5)
    assert "s3cr3t-upstream" not in health.text
    metrics = requests.get(proc.url + "/metrics", timeout=5)
    assert "s3cr3t-upstream" not in metrics.text
    assert "s3cr3t-upstream" not in proc.log()


def test_may_write_for_settings_routes() -> None:
    """POST /controls (issue 11): writes need auth when configured, else a trusted network."""
    open_policy = AccessPolicy()
    assert open_policy.may_write("127.0.0.1")
    assert open_policy.may_write("::1")
    assert not open_policy.may_write("192.168.1.5")  # reading is open, writing is not
    lan = AccessPolicy(parse_networks("192.168.1.0/24"))
    assert lan.may_write("192.168.1.5")
    assert lan.may_write("::ffff:192.168.1.5")
    assert not lan.may_write("10.0.0.1")
    assert not lan.may_write("garbage")
    # With Basic auth every request reaching the app was authenticated by the server.
    assert AccessPolicy(auth=BasicAuth(USER, FAST_HASH)).may_write("10.0.0.1")
