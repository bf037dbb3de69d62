"""Read what HAProxy knows about each backend from its ``show stat`` CSV.

Counters are the current worker's: a reload starts a new worker, so totals restart from zero.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from movierec.errors import OpsCommandFailed

BACKEND_PROXY = "web"  # the backend section's name in ops/haproxy/haproxy.cfg.template


@dataclass(frozen=True)
class BackendStats:
    """One server line of ``show stat``: its health and traffic."""

    name: str
    address: str
    backup: bool
    status: str  # HAProxy's words: UP, DOWN, MAINT, DRAIN, or "UP 1/2" while changing
    sessions: int  # open now
    requests: int  # HTTP requests served since the worker started
    check: str  # last health check result, e.g. L7OK, L7STS (a non-200 answer), L4CON

    @property
    def up(self) -> bool:
        return self.status.split()[0] in ("UP", "DRAIN")


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0


def parse_show_stat(text: str, proxy: str = BACKEND_PROXY) -> list[BackendStats]:
    """The servers of ``proxy`` in config order. Raises :class:`OpsCommandFailed` when the
    text is not ``show stat`` output."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# pxname,"):
        raise OpsCommandFailed(f"unexpected answer to `show stat`: {text.strip()[:200]!r}")
    lines[0] = lines[0][2:]
    rows = csv.DictReader(lines)
    servers = []
    for row in rows:
        if row["pxname"] != proxy or row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        servers.append(
            BackendStats(
                name=row["svname"],
                address=row.get("addr", ""),
                backup=row.get("bck") == "1",
                status=row["status"],
                sessions=_int(row, "scur"),
                requests=_int(row, "req_tot"),
                check=row.get("check_status", ""),
            )
        )
    return servers
