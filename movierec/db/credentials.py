"""The passwords of the database roles on a PostgreSQL server movierec runs.

Every server movierec starts asks for a password on TCP (scram-sha-256); only the server's
own OS user may connect without one, through the Unix socket (peer). The passwords are made
on first use (32 random bytes, URL-safe) and kept in ``<state_dir>/passwords.json``: mode
0600, owned by whoever runs movierec, never printed. A physical copy of the server (a
replica, a restored copy) has the same roles with the same passwords, so it gets a copy of
the file. The server stores only SCRAM verifiers: :func:`scram_verifier` hashes a password
before it is sent, so it appears in no statement, no log line and no ``pg_stat_activity``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from movierec.errors import ConfigError
from movierec.files import write_atomically

FILE_NAME = "passwords.json"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


@dataclass(frozen=True)
class PasswordFile:
    """The role passwords of one server, in ``<state_dir>/passwords.json``."""

    state_dir: Path

    @property
    def path(self) -> Path:
        return self.state_dir / FILE_NAME

    def get(self, role: str) -> str:
        """The password of ``role``, made and saved when it has none yet.

        Raises :class:`ConfigError` when the file is unreadable or others may read it.
        """
        passwords = self._read()
        if role not in passwords:
            passwords[role] = secrets.token_urlsafe(32)
            write_atomically(self.path, json.dumps(passwords, indent=2) + "\n", ".passwords-")
        return passwords[role]

    def copy_to(self, state_dir: Path) -> None:
        """Give the server in ``state_dir`` (a physical copy of this one) these passwords."""
        if self.path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.path, state_dir / FILE_NAME)
            (state_dir / FILE_NAME).chmod(0o600)

    def _read(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return {}
        if mode & 0o077:
            raise ConfigError(
                f"{self.path} holds database passwords and others may read it "
                f"(mode {oct(mode & 0o777)}); chmod 600 it"
            )
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path} is not a JSON object of role passwords")
        return {str(k): str(v) for k, v in data.items()}


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, 7677).

    ``ALTER ROLE ... PASSWORD '<verifier>'`` sets the password without sending it.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
