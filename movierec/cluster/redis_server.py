"""The cluster's private redis-server: the web instances' login throttle and rate limits
(counters shared by every worker of every instance).

On a free loopback port, with a generated password in its config file (mode 0600, never on a
command line) and no persistence: losing the counters costs a few free attempts, nothing more.
The config file keeps the port, so a restart (``cluster restart``) brings it back where the
web instances look for it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from movierec.cluster.members import _CHILDREN, Member, start_time
from movierec.config import Settings
from movierec.db.local_server import free_port
from movierec.errors import OpsCommandFailed

ROLE = "redis"


def start_redis(
    settings: Settings, secret: Callable[[Path, Callable[[], str]], str], say: Callable[[str], None]
) -> tuple[Member, str] | None:
    """Start the cluster's Redis; its member and URL (password included), or None (said)
    when redis-server is not installed. ``secret`` keeps the password (mode 0600)."""
    binary = shutil.which("redis-server")
    if binary is None:
        say("redis: skipped (redis-server is not installed); login limits count per worker")
        return None
    home = settings.state_dir / "redis"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secret(settings.state_dir / "redis_password", secrets.token_hex)
    port = free_port()
    config = home / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
        f'save ""\nappendonly no\ndir {home}\n'
    )
    member = _run(binary, config, port, settings.state_dir / "logs" / "redis.log")
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    _wait_for_redis(url, member.pid)
    say(f"redis: 127.0.0.1:{port} (pid {member.pid}), login limits shared by every worker")
    return member, url


def restart_redis(settings: Settings, member: Member) -> Member:
    """Start the cluster's Redis again from its config file (same port and password).

    Raises :class:`OpsCommandFailed` when it is not installed or does not answer."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise OpsCommandFailed("redis-server is not installed")
    config = settings.state_dir / "redis" / "redis.conf"
    fresh = _run(binary, config, member.port, Path(member.log or config.with_suffix(".log")))
    password = (settings.state_dir / "redis_password").read_text().strip()
    _wait_for_redis(f"redis://:{password}@127.0.0.1:{member.port}/0", fresh.pid)
    return fresh


def _run(binary: str, config: Path, port: int, log: Path) -> Member:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, str(config)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    _CHILDREN[process.pid] = process
    return Member(ROLE, ROLE, port, process.pid, start_time(process.pid), True, log=str(log))


def _wait_for_redis(url: str, pid: int | None, timeout: float = 10.0) -> None:
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    process = _CHILDREN.get(pid) if pid else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if client.ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
    raise OpsCommandFailed(f"redis-server did not answer within {timeout:.0f} s")
