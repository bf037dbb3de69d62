"""The servers movierec starts run the installed package, not a ``movierec`` directory that
happens to lie where they were started from (benches comparing an old tree against today's
ran today's on both sides because of it)."""

from __future__ import annotations

import subprocess

from movierec.processes import movierec_command


def test_a_movierec_directory_in_the_working_directory_is_not_what_runs(tmp_path):
    shadow = tmp_path / "movierec"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text("print('the shadow ran')\n")
    done = subprocess.run(
        movierec_command(["--help"]), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "the shadow ran" not in done.stdout
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr[-2000:]
