"""The report's raw figures, exactly as the database counted them. Never shown as they are: every
figure leaves the process through `publish.publish()` (small counts suppressed)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cds_service.report.period import Period

# The decision levels, most serious first (cds_service.clinical.decision.Level); others follow by name.
LEVEL_ORDER = ("urgent", "cord-features", "baseline")
BURDEN_BUCKETS = ("1", "2-3", "4-9", "10+")  # cards one patient had from one service in one month


@dataclass(frozen=True)
class ReasonKey:
    system: str | None
    code: str | None
    display: str | None


@dataclass
class WeekCounts:
    issued: int = 0
    accepted: int = 0
    overridden: int = 0


@dataclass
class LevelStats:
    level: str
    issued: int = 0
    patients: int = 0
    accepted: int = 0
    overridden: int = 0
    downgraded: int = 0
    raised_again: int = 0
    answered_with_delay: int = 0  # cards behind the median
    median_seconds_to_feedback: float | None = None
    accepted_suggestions: dict[str | None, int] = field(default_factory=dict)  # label (None: not recorded)
    override_reasons: dict[ReasonKey, int] = field(default_factory=dict)
    weeks: dict[dt.date, WeekCounts] = field(default_factory=dict)

    @property
    def no_feedback(self) -> int:
        return max(0, self.issued - self.accepted - self.overridden)


@dataclass
class MonthBurden:
    month: str  # "YYYY-MM"
    patients: int = 0
    cards: int = 0
    patients_by_cards: dict[str, int] = field(default_factory=dict)  # BURDEN_BUCKETS -> patients


@dataclass
class ServiceStats:
    service_id: str
    patients: int = 0
    levels: dict[str, LevelStats] = field(default_factory=dict)
    months: dict[str, MonthBurden] = field(default_factory=dict)

    @property
    def issued(self) -> int:
        return sum(level.issued for level in self.levels.values())

    def level(self, name: str) -> LevelStats:
        return self.levels.setdefault(name, LevelStats(name))

    def ordered_levels(self) -> list[LevelStats]:
        def rank(level: LevelStats) -> tuple[int, str]:
            known = LEVEL_ORDER.index(level.level) if level.level in LEVEL_ORDER else len(LEVEL_ORDER)
            return known, level.level

        return sorted(self.levels.values(), key=rank)


@dataclass
class ReportStats:
    period: Period
    generated_at: dt.datetime
    services: dict[str, ServiceStats] = field(default_factory=dict)
    unmatched_feedback: int = 0

    def service(self, service_id: str) -> ServiceStats:
        return self.services.setdefault(service_id, ServiceStats(service_id))
