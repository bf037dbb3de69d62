"""ops/keepalived/keepalived.conf.template, rendered for the two director hosts, is a
configuration keepalived itself accepts (``keepalived --config-test``; nothing is started).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from string import Template

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "ops" / "keepalived" / "keepalived.conf.template"
HOSTS = {
    "director-a": {"priority": 110, "host_ip": "192.0.2.10", "peer_ip": "192.0.2.11"},
    "director-b": {"priority": 100, "host_ip": "192.0.2.11", "peer_ip": "192.0.2.10"},
}


@pytest.fixture(scope="module")
def keepalived() -> str:
    found = shutil.which("keepalived") or shutil.which("keepalived", path="/usr/sbin")
    if found is None:
        pytest.skip("keepalived is not installed (ops/install-test-tools.sh installs it)")
    return found


@pytest.fixture(scope="module")
def interface() -> str:
    """A network interface of this machine that VRRP may use (not the loopback)."""
    names = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    if not names:
        pytest.skip("this machine has no network interface but the loopback")
    return names[0]


def render(host: str, interface: str) -> str:
    return Template(TEMPLATE.read_text()).substitute(
        host_name=host,
        interface=interface,
        router_id=51,
        virtual_ip="192.0.2.100/24",
        check_url="http://127.0.0.1:8404/stats",
        **HOSTS[host],
    )


def complaints(keepalived: str, path: Path) -> list[str]:
    """What ``keepalived --config-test`` says about ``path``: nothing when it accepts it."""
    done = subprocess.run(
        [keepalived, "--config-test", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_rendered_configuration_is_accepted_by_keepalived(keepalived, interface, host, tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(render(host, interface))
    assert complaints(keepalived, path) == []
    text = path.read_text()
    assert f"priority {HOSTS[host]['priority']}" in text
    assert "state BACKUP" in text and "preempt_delay 30" in text


def test_the_check_sees_a_broken_configuration(keepalived, interface, tmp_path):
    """The check above can fail: a misspelt keyword and a router id out of range are named."""
    path = tmp_path / "keepalived.conf"
    text = render("director-a", interface)
    path.write_text(text.replace("priority 110", "prority 110").replace("id 51", "id 999"))
    said = "\n".join(complaints(keepalived, path))
    assert "Unknown keyword 'prority'" in said and "999" in said
