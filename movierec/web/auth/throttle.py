"""Throttling password guesses without locking the owner out.

Every login attempt is counted *before* its password is checked, atomically, in counters that
all workers share (Redis, ``ratelimit_storage_uri``); a success gives its count back.

* **Per client address**: at most ``ratelimit_login`` attempts (e.g. "10 per minute"); then
  429 until the window ends. One address cannot try many passwords, nor many accounts.
* **Per account, growing delays** (OWASP's answer to lockout as a denial of service): the
  first ``login_free_failures`` failures cost nothing; after that each attempt must wait
  twice as long as the one before (1 s, 2 s, 4 s, ... at most ``login_delay_max`` s), and
  an attempt that comes too early is refused unchecked. Spread over many addresses, an
  attacker gets a few guesses an hour, and cannot lock anyone out: a login from a *known*
  device (a signed cookie the browser got when it last logged in to that account) or a known
  address (one the account logged in from in the last 30 days) skips the account's delay
  (its address limit still applies). A success resets the account's count.

Without Redis (``memory://``) the counters are per worker process: with N workers an
attacker gets N times the attempts. The site says so in its log when it starts. Should Redis
fail while running, each worker counts in its own memory until it answers again (a warning
in the log): neither failing open nor locking everyone out.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse
from werkzeug.wrappers import Response

from movierec.config import Settings
from movierec.errors import ConfigError

log = logging.getLogger(__name__)
KNOWN_ADDRESS_DAYS = 30
FIRST_DELAY = 1.0  # seconds, doubled for each further failure

# KEYS[1]: the account's hash {failures, next_at}. ARGV: now, free, max delay, ttl, first delay.
# Refused (the seconds to wait) while now < next_at; else this attempt is reserved as a
# failure and the next one's earliest time set.
ACCOUNT_SCRIPT = """
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0')
local now = tonumber(ARGV[1])
if now < next_at then return tostring(next_at - now) end
failures = failures + 1
local delay = 0
if failures > tonumber(ARGV[2]) then
    local beyond = failures - tonumber(ARGV[2]) - 1
    delay = math.min(tonumber(ARGV[3]), tonumber(ARGV[5]) * 2 ^ beyond)
end
redis.call('HSET', KEYS[1], 'failures', failures, 'next_at', tostring(now + delay))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return '0'
"""
# KEYS[1]: the address's counter. ARGV: limit, window seconds. Counted, then compared.
ADDRESS_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return redis.call('TTL', KEYS[1]) end
return 0
"""
# KEYS[1]: the address's counter: a success gives its attempt back.
REFUND_SCRIPT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class Counters(Protocol):
    def address_attempt(self, key: str, limit: int, window: int, now: float) -> float: ...
    def address_refund(self, key: str) -> None: ...
    def account_attempt(self, key: str, free: int, max_delay: int, now: float) -> float: ...
    def account_reset(self, key: str) -> None: ...
    def known(self, key: str, member: str, now: float) -> bool: ...
    def remember(self, key: str, member: str, now: float, days: int) -> None: ...


class MemoryCounters:
    """The same counters in this process, under one lock (each step is atomic here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._addresses: dict[str, tuple[int, float]] = {}  # count, window end
        self._accounts: dict[str, tuple[int, float]] = {}  # failures, next_at
        self._known: dict[str, dict[str, float]] = {}  # member -> until

    def address_attempt(self, key: str, limit: int, window: int, now: float) -> float:
        with self._lock:
            count, end = self._addresses.get(key, (0, now + window))
            if now >= end:
                count, end = 0, now + window
            self._addresses[key] = (count + 1, end)
            return end - now if count + 1 > limit else 0.0

    def address_refund(self, key: str) -> None:
        with self._lock:
            count, end = self._addresses.get(key, (0, 0.0))
            if count > 0:
                self._addresses[key] = (count - 1, end)

    def account_attempt(self, key: str, free: int, max_delay: int, now: float) -> float:
        with self._lock:
            failures, next_at = self._accounts.get(key, (0, 0.0))
            if now < next_at:
                return next_at - now
            failures += 1
            self._accounts[key] = (failures, now + delay_after(failures, free, max_delay))
            return 0.0

    def account_reset(self, key: str) -> None:
        with self._lock:
            self._accounts.pop(key, None)

    def known(self, key: str, member: str, now: float) -> bool:
        with self._lock:
            return self._known.get(key, {}).get(member, 0.0) > now

    def remember(self, key: str, member: str, now: float, days: int) -> None:
        with self._lock:
            self._known.setdefault(key, {})[member] = now + days * 86400


def delay_after(failures: int, free: int, max_delay: int) -> float:
    """How long the attempt after ``failures`` failures must wait."""
    if failures <= free:
        return 0.0
    return min(float(max_delay), FIRST_DELAY * 2 ** (failures - free - 1))


class RedisCounters:
    """The counters in Redis, shared by every worker of every instance; each step is one
    script, so concurrent attempts are counted one after the other."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._address = client.register_script(ADDRESS_SCRIPT)
        self._refund = client.register_script(REFUND_SCRIPT)
        self._account = client.register_script(ACCOUNT_SCRIPT)

    def address_attempt(self, key: str, limit: int, window: int, now: float) -> float:
        return float(self._address(keys=[key], args=[limit, window]))

    def address_refund(self, key: str) -> None:
        self._refund(keys=[key])

    def account_attempt(self, key: str, free: int, max_delay: int, now: float) -> float:
        ttl = max_delay * 4 + 3600  # forgotten once it can no longer slow anyone
        return float(self._account(keys=[key], args=[repr(now), free, max_delay, ttl, FIRST_DELAY]))

    def account_reset(self, key: str) -> None:
        self.client.delete(key)

    def known(self, key: str, member: str, now: float) -> bool:
        return bool(self.client.sismember(key, member))

    def remember(self, key: str, member: str, now: float, days: int) -> None:
        pipe = self.client.pipeline()
        pipe.sadd(key, member)
        pipe.expire(key, days * 86400)
        pipe.execute()


class FallingBack:
    """Redis while it answers; this process's memory while it does not."""

    def __init__(self, primary: RedisCounters):
        self.primary, self.memory = primary, MemoryCounters()
        self._warned = False

    def __getattr__(self, name: str):
        def call(*args):
            try:
                return getattr(self.primary, name)(*args)
            except redis.RedisError as exc:
                if not self._warned:
                    log.warning("login throttle: Redis failed (%s); counting in memory", exc)
                    self._warned = True
                return getattr(self.memory, name)(*args)

        return call


@dataclass
class LoginThrottle:
    """The rules of the module docstring over one set of :class:`Counters`."""

    counters: Counters
    address_limit: int
    window: int
    free_failures: int
    max_delay: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        """Raises :class:`ConfigError` for a malformed ``ratelimit_login`` or storage URI."""
        try:
            limit = parse(settings.ratelimit_login)
        except ValueError as exc:
            raise ConfigError(
                f"ratelimit_login: {settings.ratelimit_login!r} is not a rate limit"
            ) from exc
        uri = settings.ratelimit_storage_uri
        counters: Counters
        if uri.startswith("memory://"):
            log.warning(
                "ratelimit_storage_uri is memory://: login attempts are counted per worker "
                "process, so each worker allows its own; set redis://... to share them"
            )
            counters = MemoryCounters()
        elif uri.startswith(("redis://", "rediss://", "unix://")):
            counters = FallingBack(RedisCounters(redis.Redis.from_url(uri, socket_timeout=1.0)))
        else:
            raise ConfigError("ratelimit_storage_uri: use memory:// or redis://host:port")
        return cls(
            counters, limit.amount, limit.get_expiry(), settings.login_free_failures,
            settings.login_delay_max,
        )  # fmt: skip

    def admit(self, account: str, address: str, known: bool) -> float:
        """Count an attempt before its password is checked: 0 to go ahead, else the seconds
        to wait (refused unchecked)."""
        now = time.time()
        wait = self.counters.address_attempt(_key("ip", address), self.address_limit,
                                             self.window, now)  # fmt: skip
        if wait > 0 or known:
            return wait
        return self.counters.account_attempt(
            _key("account", account), self.free_failures, self.max_delay, now
        )

    def succeeded(self, account: str, address: str) -> None:
        """The password was right: the account's failures are forgotten, the address's
        attempt is given back, and the address is known to the account from now on."""
        self.counters.account_reset(_key("account", account))
        self.counters.address_refund(_key("ip", address))
        self.counters.remember(_key("known", account), address, time.time(), KNOWN_ADDRESS_DAYS)

    def known_address(self, account: str, address: str) -> bool:
        return self.counters.known(_key("known", account), address, time.time())


def _key(kind: str, name: str) -> str:
    return f"movierec:login:{kind}:{name}"


# --- known devices ---------------------------------------------------------------------------

DEVICE_COOKIE = "movierec_device"
KNOWN_DEVICE_DAYS = 180
DEVICE_ACCOUNTS = 5  # the accounts one browser is known for


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="movierec.known-device")


def _device_accounts() -> list[str]:
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        found = _device_signer().loads(raw, max_age=KNOWN_DEVICE_DAYS * 86400)
    except BadSignature:
        return []
    return [a for a in found if isinstance(a, str)] if isinstance(found, list) else []


def device_knows(account: str) -> bool:
    """Whether this browser logged in to ``account`` before (a cookie only we can sign)."""
    return account in _device_accounts()


def remember_device(response: Response, account: str) -> None:
    """Make this browser a known device of ``account`` (after a correct password)."""
    accounts = [account, *(a for a in _device_accounts() if a != account)][:DEVICE_ACCOUNTS]
    response.set_cookie(
        DEVICE_COOKIE,
        _device_signer().dumps(accounts),
        max_age=KNOWN_DEVICE_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    )
