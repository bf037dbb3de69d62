"""Render a director's haproxy.cfg from the templates in ``ops/haproxy/`` and check it.

The file is only replaced after ``haproxy -c`` accepted the new text, so a bad change never
reaches the running director: it keeps serving with the configuration it has.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from string import Template

from movierec.director.haproxy import run_haproxy
from movierec.director.state import DirectorFiles, DirectorState
from movierec.errors import ConfigError, OpsCommandFailed

OPS_DIR = Path(__file__).resolve().parents[2] / "ops" / "haproxy"


def _template(name: str) -> Template:
    path = OPS_DIR / name
    try:
        return Template(path.read_text())
    except OSError as exc:
        raise ConfigError(f"HAProxy template {path} is missing ({exc.strerror})") from exc


def render_config(state: DirectorState, files: DirectorFiles) -> str:
    """The text of haproxy.cfg for ``state``. Raises :class:`ConfigError` if a template is
    missing or a socket path is too long."""
    files.check_socket_paths()
    server = _template("server.cfg.template")
    servers = [
        server.substitute(
            name=b.name, address=b.address, flags=" backup" if b.backup else ""
        ).rstrip("\n")
        for b in state.backends
    ]
    stats = ""
    if state.stats_port is not None:
        stats = _template("stats.cfg.template").substitute(stats_port=state.stats_port)
    return _template("haproxy.cfg.template").substitute(
        name=state.name,
        stats_socket=files.stats_socket,
        server_state=files.server_state,
        bind=f"{state.host}:{state.port}",
        balance=state.balance,
        servers="\n".join(servers),
        stats=stats,
    )


def check_config(path: Path) -> None:
    """Run ``haproxy -c -f path``. Raises :class:`OpsCommandFailed` with HAProxy's reason."""
    run_haproxy(["-c", "-f", str(path)], what="configuration check")


def write_checked_config(state: DirectorState, files: DirectorFiles) -> str | None:
    """Render, check, then atomically install ``files.config``; return the previous text.

    Raises :class:`ConfigError` (see :func:`render_config`) or :class:`OpsCommandFailed` when
    HAProxy rejects the configuration, in which case the installed file is left unchanged.
    """
    text = render_config(state, files)
    files.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=files.run_dir, prefix=".haproxy.", suffix=".cfg")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        try:
            check_config(Path(tmp))
        except OpsCommandFailed as exc:
            # HAProxy names the temporary file ("[/tmp/x.cfg:59]"); the reader knows it as
            # the new haproxy.cfg (and a bracketed path would read as rich markup).
            where = re.compile(r"\[" + re.escape(tmp) + r":(\d+)\]")
            raise OpsCommandFailed(where.sub(r"new haproxy.cfg line \1", str(exc))) from None
        previous = files.config.read_text() if files.config.exists() else None
        os.replace(tmp, files.config)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return previous


def restore_config(files: DirectorFiles, previous: str | None) -> None:
    """Put back the text :func:`write_checked_config` replaced (nothing if there was none)."""
    if previous is None:
        files.config.unlink(missing_ok=True)
        return
    tmp = files.config.with_suffix(".restore")
    tmp.write_text(previous)
    os.replace(tmp, files.config)
