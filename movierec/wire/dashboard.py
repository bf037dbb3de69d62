"""The operator's dashboard's form fields (:mod:`movierec.web.dashboard`), read by the same
rules as every other parameter of the site (:mod:`movierec.wire.params`)."""

from __future__ import annotations

from movierec.wire.params import Choice, Integer, Text

# A change id: the rollback reverts every change after it.
TO_ID = Integer("to_id", "Revert every change after this one.", required=True, low=0)
# The last change the dry run showed: what the second click confirms is what is reverted.
THROUGH_ID = Integer("through_id", "The last change the dry run showed.", required=True)
# Only this table's changes (the history library checks it is a tracked table).
TABLE = Text("table", "Only this table's changes.", max_chars=63)
# The registry's kinds (movierec.ai.registry.KINDS), written out: the site imports no model code.
KIND = Choice(
    "kind", "The model kind to roll back.", choices=("ranking", "rating"), default="ranking"
)

PREVIEW = (TO_ID, TABLE)
APPLY = (TO_ID, THROUGH_ID, TABLE)
MODEL_ROLLBACK = (KIND,)
