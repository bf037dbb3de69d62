"""A real OpenID Connect provider for tests: npm `oidc-provider` run by node on 127.0.0.1.

    with start_oidc_provider(clients=[OIDCClient("rp", "secret", [redirect_uri])]) as op:
        op.issuer, op.authorization_endpoint, op.token_endpoint, op.userinfo_endpoint

Any login/password is accepted by its built-in login page; the account is deterministic:
sub = login, name = "Test <login>", preferred_username = login, email = <login>@example.test,
email_verified = true. Scopes: openid, profile, email. PKCE (S256) is required for every client
unless pkce="optional". Start one per provider you need (each on its own port).

If node or the provider's node_modules are missing this FAILS (no skip): `make test` installs them
(ops/install-test-tools.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
INSTALL_HINT = "run `make test` (ops/install-test-tools.sh installs the test tools)"


@dataclass(frozen=True)
class OIDCClient:
    """A client registered at the provider. No secret = public client (auth method "none")."""

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    extra: Mapping[str, object] = field(default_factory=dict)  # other client metadata

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"client_id": self.client_id, "redirect_uris": self.redirect_uris}
        if self.client_secret:
            data["client_secret"] = self.client_secret
        data.update(self.extra)
        return data


class OIDCProviderError(RuntimeError):
    pass


class OIDCProvider:
    """A running provider process. Use as a context manager, or call stop()."""

    def __init__(
        self,
        process: subprocess.Popen[str],
        reader: threading.Thread,
        issuer: str,
        clients: list[OIDCClient],
    ):
        self.process = process
        self._reader = reader
        self.issuer = issuer
        self.port = int(issuer.rsplit(":", 1)[1])
        self.clients = clients
        self._metadata: dict[str, object] | None = None

    @property
    def metadata(self) -> dict[str, object]:
        """The provider's /.well-known/openid-configuration (fetched once)."""
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            response = requests.get(url, timeout=10)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    @property
    def authorization_endpoint(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def userinfo_endpoint(self) -> str:
        return str(self.metadata["userinfo_endpoint"])

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        _close_output(self.process, self._reader)

    def __enter__(self) -> OIDCProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"OIDCProvider({self.issuer!r}, pid={self.process.pid})"


def _close_output(process: subprocess.Popen[str], reader: threading.Thread) -> None:
    reader.join(5)  # it ends at EOF, once the process is gone
    if process.stdout is not None:
        process.stdout.close()


def _as_client(client: OIDCClient | Mapping[str, object]) -> OIDCClient:
    if isinstance(client, OIDCClient):
        return client
    data = dict(client)
    return OIDCClient(
        client_id=str(data.pop("client_id")),
        client_secret=data.pop("client_secret", None),  # type: ignore[arg-type]
        redirect_uris=list(data.pop("redirect_uris")),  # type: ignore[call-overload]
        extra=data,
    )


def start_oidc_provider(
    port: int | None = None,
    clients: Iterable[OIDCClient | Mapping[str, object]] = (),
    *,
    pkce: str = "required",
    timeout: float = 20.0,
    provider_dir: Path = PROVIDER_DIR,
) -> OIDCProvider:
    """Start `node provider.mjs` on 127.0.0.1:`port` (None = a free port); wait for READY.

    `clients` are OIDCClient or dicts with client_id, client_secret, redirect_uris (the
    redirect URIs must match the ones the relying party sends exactly: use 127.0.0.1).
    Raises OIDCProviderError, with the process output, if it dies or is not ready in `timeout` s.
    """
    node = shutil.which("node")
    if node is None:
        raise OIDCProviderError(f"node is not installed (Node.js 20+ is needed): {INSTALL_HINT}")
    if not (provider_dir / "node_modules" / "oidc-provider").is_dir():
        raise OIDCProviderError(
            f"the OIDC provider's npm packages are missing in {provider_dir}/node_modules: "
            f"{INSTALL_HINT}"
        )
    client_list = [_as_client(c) for c in clients]
    env = {
        **os.environ,
        "OIDC_PORT": str(port or 0),
        "OIDC_CLIENTS": json.dumps([c.to_json() for c in client_list]),
        "OIDC_PKCE": pkce,
    }
    process = subprocess.Popen(
        [node, str(provider_dir / "provider.mjs")],
        cwd=provider_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()
    issuer: list[str] = []

    def read() -> None:  # drains the pipe for the process's whole life
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if not ready.is_set() and line.startswith("READY "):
                issuer.append(line.split()[1])
                ready.set()
        ready.set()  # EOF: the process has exited

    reader = threading.Thread(target=read, name=f"oidc-provider-{process.pid}", daemon=True)
    reader.start()
    if not ready.wait(timeout) or not issuer:
        alive = process.poll() is None
        if alive:
            process.kill()
        process.wait(10)
        _close_output(process, reader)
        state = f"not ready after {timeout:g} s" if alive else f"exited ({process.returncode})"
        text = "".join(output).strip() or "(no output)"
        raise OIDCProviderError(f"OIDC provider {state}; its output:\n{text}")
    return OIDCProvider(process, reader, issuer[0], client_list)


StartProvider = Callable[..., OIDCProvider]


@pytest.fixture
def oidc_provider_factory() -> Iterator[StartProvider]:
    """Call it like start_oidc_provider(); every provider started is stopped after the test."""
    started: list[OIDCProvider] = []

    def start(*args: object, **kwargs: object) -> OIDCProvider:
        provider = start_oidc_provider(*args, **kwargs)  # type: ignore[arg-type]
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()
