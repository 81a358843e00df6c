"""Who is sent to the external model: the one seam between recommendations and flags.

:class:`FlagRouting` is what the API uses: the flag ``recommendations.model``
(evaluated in process, per user) decides, and every model call's outcome is
recorded against that flag for its release guard. :class:`AlwaysModel` sends
everyone (when a model is configured); tests and tools use it.
"""

from __future__ import annotations

import uuid

from orderly.flags import client as flags

MODEL_FLAG = "recommendations.model"


class FlagRouting:
    """The flag ``recommendations.model`` decides, per user; outcomes feed its guard."""

    def use_model(self, user_id: uuid.UUID) -> bool:
        """Whether the flag is on for this user."""
        return flags.is_enabled(MODEL_FLAG, flags.context(user_id=user_id))

    def record_outcome(self, user_id: uuid.UUID, ok: bool) -> None:
        """Count the call in the flag's on-cohort (only users the flag sends here call it)."""
        flags.record_outcome(MODEL_FLAG, True, ok=ok)  # only the on-cohort calls it


class AlwaysModel:
    """Everyone goes to the model (when one is configured); outcomes are not recorded."""

    def use_model(self, user_id: uuid.UUID) -> bool:
        """Always."""
        return True

    def record_outcome(self, user_id: uuid.UUID, ok: bool) -> None:
        """Nothing to record."""


FLAG_ROUTING = FlagRouting()
