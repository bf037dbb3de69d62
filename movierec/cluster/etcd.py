"""The local cluster's etcd: one member on loopback, the DCS every Patroni group of the
cluster keeps its leader lock and configuration in (each group under a scope of its own).

One member is no quorum of machines, but on one machine it is what there is: it gives the
Patroni groups the same leader election, TTLs and watch semantics a three-member etcd gives
them in production. Its data lives in ``state_dir/etcd``; Debian's ``etcd-server`` package
provides the binary (``ops/install-system.sh``). ``cluster up`` starts it before any Patroni
member and ``cluster down`` stops it after the last one.

Authentication is on from the first start: movierec itself uses the ``root`` user (its password
in ``state_dir/etcd/passwords.json``, mode 0600), and each group's Patroni a user of its own
that may read and write only its group's keys (``/movierec/<scope>/``), so a local process
without a password can neither read the cluster's state nor trigger a failover through it.
"""

from __future__ import annotations

import base64
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from movierec.cluster.daemon import Daemon
from movierec.db.credentials import PasswordFile
from movierec.errors import OpsCommandFailed

ETCD_CANDIDATES = ("/usr/bin/etcd", "/usr/local/bin/etcd")
MEMBER_NAME = "movierec"
ROOT = "root"


def etcd_binary() -> str:
    """The etcd executable. Raises :class:`OpsCommandFailed` when it is not installed."""
    for candidate in (*ETCD_CANDIDATES, shutil.which("etcd")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise OpsCommandFailed("etcd not found; install the Debian package etcd-server")


@dataclass(frozen=True)
class LocalEtcd:
    """A one-member etcd under ``state_dir/etcd``, clients on ``client_port``."""

    root: Path  # state_dir/etcd
    client_port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def daemon(self) -> Daemon:
        return Daemon("etcd", self.root / "etcd.pid", self.root / "etcd.log")

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            etcd_binary(),
            "--name", MEMBER_NAME,
            "--data-dir", str(self.root / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{MEMBER_NAME}={peer}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"movierec-{self.client_port}",
            # Patroni's etcd3 client talks to the gRPC gateway's JSON API (v3).
            "--enable-v2=false",
            "--log-level", "warn",
            "--logger", "zap",
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> bool:
        """Start etcd unless it runs; wait until it is healthy. True when started here.

        Raises :class:`OpsCommandFailed` when it does not become healthy within ``timeout``.
        """
        if self.daemon.running():
            self.wait_healthy(timeout)
            return False
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.daemon.start(self.argv())
        self.wait_healthy(timeout)
        self._ensure_auth()
        return True

    def healthy(self) -> bool:
        try:
            answer = requests.get(f"{self.url}/health", timeout=1)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.json().get("health") == "true"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not self.daemon.running():
                raise OpsCommandFailed(f"etcd exited: {self.daemon.log_tail()}")
            time.sleep(0.1)
        raise OpsCommandFailed(f"etcd not healthy on {self.url} after {timeout:.0f} s")

    def stop(self) -> bool:
        """Stop etcd; False when it did not run. Raises :class:`OpsCommandFailed`."""
        return self.daemon.stop()

    # --- authentication and keys (the v3 JSON gateway) -----------------------------------

    def _call(self, path: str, body: dict, token: str | None = None) -> dict:
        """POST ``body`` to ``/v3/<path>``; the answer. Raises :class:`OpsCommandFailed`."""
        headers = {"Authorization": token} if token else {}
        try:
            answer = requests.post(f"{self.url}/v3/{path}", json=body, headers=headers, timeout=5)
            data = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise OpsCommandFailed(f"etcd at {self.url}: {path}: {exc}") from exc
        if answer.status_code != 200:
            raise OpsCommandFailed(f"etcd at {self.url}: {path}: {data.get('message', data)}")
        return data

    def _root_token(self) -> str:
        password = PasswordFile(self.root).get(ROOT)
        return self._call("auth/authenticate", {"name": ROOT, "password": password})["token"]

    def _ensure_auth(self) -> None:
        """Turn authentication on (once), with the root user movierec keeps the password of."""
        try:
            self._root_token()
            return  # on already
        except OpsCommandFailed as exc:
            if "authentication is not enabled" not in str(exc):
                raise
        password = PasswordFile(self.root).get(ROOT)
        self._call("auth/user/add", {"name": ROOT, "password": password})
        self._call("auth/user/grant", {"user": ROOT, "role": ROOT})
        self._call("auth/enable", {})

    def grant_prefix(self, user: str, password: str, prefix: str) -> None:
        """Make (or update) ``user`` with ``password``, allowed to read and write the keys
        under ``prefix`` and nothing else."""
        token = self._root_token()
        for path, body in (
            ("auth/role/add", {"name": user}),
            ("auth/user/add", {"name": user, "password": password}),
        ):
            try:
                self._call(path, body, token)
            except OpsCommandFailed as exc:
                if "already exists" not in str(exc):
                    raise
        self._call("auth/user/changepw", {"name": user, "password": password}, token)
        permission = {"permType": "READWRITE", "key": _b64(prefix), "range_end": _b64(_end(prefix))}
        self._call("auth/role/grant", {"name": user, "perm": permission}, token)
        self._call("auth/user/grant", {"user": user, "role": user}, token)

    def delete_keys(self, prefix: str, keep: tuple[str, ...] = ()) -> list[str]:
        """Delete every key under ``prefix`` but those ending with one of ``keep``; the keys
        deleted. Raises :class:`OpsCommandFailed`."""
        token = self._root_token()
        found = self._call(
            "kv/range",
            {"key": _b64(prefix), "range_end": _b64(_end(prefix)), "keys_only": True},
            token,
        )
        keys = [base64.b64decode(kv["key"]).decode() for kv in found.get("kvs", [])]
        deleted = [key for key in keys if not key.endswith(keep)]
        for key in deleted:
            self._call("kv/deleterange", {"key": _b64(key)}, token)
        return deleted


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _end(prefix: str) -> str:
    """The end of the key range that holds every key starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
