"""Alert-fatigue control: after a clinician overrode this card for this patient, repeat it as
information (not as a warning or critical alert) until a new red flag appears.

Why downgrade rather than hide: hiding would make the advice vanish from the chart although the
evidence is still there; an `info` card is passive in EHRs (no interruption) but stays reviewable.
A red flag is "new since the override" when the card that was overridden did not list it, or when it
is dated after the override. Either way the decision says what happened (`quieted_by` or
`raised_again_after`), so the issued card records it for the governance report. Pure: the override
memory is passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from cds_service.clinical.decision import Decision, Level


@dataclasses.dataclass(frozen=True)
class OverrideNote:
    """Why a card is shown quieter than its level: the earlier override."""

    overridden_on: dt.date
    reason: str | None


def quiet_after_override(
    decision: Decision, overridden_at: dt.datetime, known_red_flags: Iterable[str], reason: str | None
) -> Decision:
    """The decision, marked to be shown as information when nothing new has appeared since the override."""
    if decision.level is Level.NONE:
        return decision
    known = set(known_red_flags)
    override_day = overridden_at.date()
    new_since = [
        f
        for f in decision.facts.new_red_flags
        if f.evidence.reference not in known or (f.evidence.date is not None and f.evidence.date > override_day)
    ]
    note = OverrideNote(override_day, reason)
    if new_since:
        return dataclasses.replace(decision, raised_again_after=note)  # full level; recorded for the report
    return dataclasses.replace(decision, quieted_by=note)
