"""Benches only: ``PYTHONPATH=bench/code_from:<tree>`` runs ``movierec`` from ``<tree>`` (an
old worktree, say), in this process and in every server it starts.

``make install`` installs this checkout editable, through a finder on ``sys.meta_path`` that
answers ``import movierec`` before ``PYTHONPATH`` is searched; Python imports this module at
start-up (it is ``sitecustomize`` on the path), and it drops that finder.
"""

import sys

_EDITABLE = "__editable___movierec"
sys.meta_path[:] = [
    f for f in sys.meta_path
    if _EDITABLE not in getattr(f, "__module__", "") and _EDITABLE not in type(f).__module__
]  # fmt: skip
