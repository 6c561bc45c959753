"""Schedule rules and their fire times: parsing a cron rule, naming a time
zone, computing when a rule fires, previewing it, and the pure decisions the
scheduler makes (coalescing missed fires, skipping for overlap).

A rule is a 5-field Vixie cron line (minute hour day-of-month month
day-of-week: numbers, ranges, lists, steps, month and day names) or one of
``@hourly @daily @weekly @monthly @yearly``. Nothing else is accepted.

Fire times are computed on wall-clock times in the schedule's zone and
returned in UTC, with these DST rules:

- a wall time that a spring-forward skips fires once, at the shifted time
  (02:30 on the day New York jumps from 02:00 to 03:00 fires at 03:30 EDT);
- in a fall-back, a rule with a fixed hour fires once, at the first
  occurrence, while a rule whose hour field is ``*`` or a step fires at every
  real instant (01:30 EDT and 01:30 EST).

croniter is not used here: it accepts extensions the product refuses
(seconds, ``L``, ``W``, ``#``, ``?``, ``@midnight``), ORs a stepped
day-of-month with a day-of-week where Vixie cron ANDs them, fires a skipped
02:30 at 03:00 and a fixed 01:30 twice in a fall-back.

Nothing here reads a clock: every function that needs "now" takes it.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from crewboard.clock import iso
from crewboard.errors import ValidationFailed

MACROS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}

OVERLAP_MODES = ("skip", "allow")

PREVIEW_MAX = 100

_MAX_RULE_CHARS = 200
# The longest a valid rule can go without firing is a Feb 29 that must also
# fall on a given weekday: about 40 years. A search that finds no matching
# day for this long has found a rule that never fires.
_HORIZON_DAYS = 366 * 100

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # a name's value is its index + low


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    # Vixie cron takes 0-7 with both 0 and 7 meaning Sunday.
    _Field("day-of-week", 0, 7, _DAYS),
)

_TOKEN = re.compile(r"[0-9a-z]+", re.ASCII)
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
# Names that exist as files in some zoneinfo trees but are not zones a
# person would pick, or that mean "whatever this machine says".
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@dataclass(frozen=True)
class CronRule:
    """A parsed rule: the set of values each field matches."""

    text: str  # normalized: lower case, single spaces
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    # Vixie cron: when either day field starts with "*", a date must match
    # both; when neither does, matching either is enough.
    day_star: bool
    weekday_star: bool
    # The hour field is "*" or a step: fire at every real instant in a fall-back.
    every_hour: bool

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


def _rule_error(detail: str) -> ValidationFailed:
    return ValidationFailed(f"invalid schedule rule: {detail}", fields={"rule": detail})


def _value(token: str, field: _Field) -> int:
    if token.isdigit():
        if len(token) > 4 or not field.low <= int(token) <= field.high:
            raise _rule_error(f"{field.name}: {token} is out of range {field.low}-{field.high}")
        return int(token)
    if field.names and token in field.names:
        return field.names.index(token) + field.low
    what = "a number"
    if field.names:
        what += " or a month name" if field.name == "month" else " or a day name"
    if token in ("l", "w", "h") or (token[:1].isdigit() and token[-1:] in ("l", "w")):
        what += " (the L, W, H, # and ? extensions are not supported)"
    shown = token.upper() if len(token) == 1 else token
    raise _rule_error(f"{field.name}: {shown!r} is not {what}")


def _parse_field(text: str, field: _Field) -> tuple[frozenset[int], bool]:
    """The values ``text`` matches, and whether it starts with ``*``."""
    bad = set(text) - set("0123456789abcdefghijklmnopqrstuvwxyz*,-/")
    if bad:
        char = sorted(bad)[0]
        raise _rule_error(
            f"{field.name}: unexpected character {char!r} "
            "(use numbers, names, '*', '-', '/' and ',')"
        )
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _rule_error(f"{field.name}: empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            if not _TOKEN.fullmatch(first) or not _TOKEN.fullmatch(last):
                raise _rule_error(f"{field.name}: {item!r} is not a range")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise _rule_error(f"{field.name}: range {base!r} goes backwards")
        elif _TOKEN.fullmatch(base):
            if slash:
                raise _rule_error(
                    f"{field.name}: a step needs a range or '*' before it, "
                    f"e.g. {base}-{field.high}/{step_text}"
                )
            low = high = _value(base, field)
        else:
            raise _rule_error(f"{field.name}: {item!r} is not a number, range or '*'")
        step = 1
        if slash:
            # Day-of-week counts 0-7 but has seven distinct days.
            span = 7 if field.names == _DAYS else field.high - field.low + 1
            if not step_text.isdigit() or len(step_text) > 4 or not 1 <= int(step_text) <= span:
                raise _rule_error(f"{field.name}: step {step_text!r} must be a number 1-{span}")
            step = int(step_text)
        values.update(range(low, high + 1, step))
    return frozenset(values), text.startswith("*")


@lru_cache(maxsize=256)
def _parse(text: str) -> CronRule:
    if len(text) > _MAX_RULE_CHARS:
        raise _rule_error(f"a rule is at most {_MAX_RULE_CHARS} characters")
    if any(not char.isprintable() and char != "\t" for char in text):
        raise _rule_error("a rule is one line of printable text")
    normalized = text.strip(" \t").lower()
    if normalized.startswith("@"):
        if normalized not in MACROS:
            raise _rule_error(
                f"{text.strip()!r} is not one of " + ", ".join(MACROS) + " (or a 5-field rule)"
            )
        parts = MACROS[normalized].split()
    else:
        parts = re.split(r"[ \t]+", normalized) if normalized else []
        if len(parts) != 5:
            raise _rule_error(
                f"expected 5 fields (minute hour day-of-month month day-of-week) "
                f"or one of {', '.join(MACROS)}; got {len(parts)} field(s)"
            )
        normalized = " ".join(parts)
    parsed = [_parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, weekday_star) = parsed
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    if (
        not day_star
        and weekday_star
        and not any(d <= _DAYS_IN_MONTH[m - 1] for m in months for d in days)
    ):
        raise _rule_error("never fires: none of its months has that day of the month")
    return CronRule(
        text=normalized,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=weekdays,
        day_star=day_star,
        weekday_star=weekday_star,
        every_hour=("*" in parts[1] or "/" in parts[1]),
    )


def parse_rule(rule: Any) -> CronRule:
    """Parse a rule; a bad one is ValidationFailed with ``fields={"rule": ...}``."""
    if not isinstance(rule, str):
        raise _rule_error("must be a string")
    return _parse(rule)


def validate_rule(rule: Any) -> str:
    """The normalized rule (lower case, single spaces), or ValidationFailed."""
    return parse_rule(rule).text


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def validate_timezone(name: Any) -> ZoneInfo:
    """The IANA zone called ``name`` (e.g. ``Europe/London``, ``UTC``), or
    ValidationFailed with ``fields={"timezone": ...}``."""
    if not isinstance(name, str) or not name:
        detail = "must be an IANA time zone name such as Europe/London"
    elif len(name) > 64 or not _ZONE_NAME.fullmatch(name) or name not in _zone_names():
        detail = "unknown time zone; use an IANA name such as America/New_York"
    else:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            detail = "unknown time zone; use an IANA name such as America/New_York"
    raise ValidationFailed(f"invalid time zone: {detail}", fields={"timezone": detail})


def validate_overlap(value: Any) -> str:
    """``"skip"`` or ``"allow"``, or ValidationFailed with ``fields={"overlap": ...}``."""
    if not isinstance(value, str) or value not in OVERLAP_MODES:
        detail = "must be one of " + ", ".join(OVERLAP_MODES)
        raise ValidationFailed(f"invalid overlap: {detail}", fields={"overlap": detail})
    return value


def _zone(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else validate_timezone(tz)


def _utc(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return dt.astimezone(UTC)


def _instants(wall: datetime, tz: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The real instants (UTC) at which the naive local ``wall`` time fires."""
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert first is not None and second is not None
    # fold=0 reads a wall time with the offset in force before a transition:
    # a time in a spring-forward gap lands at the shifted instant after it,
    # and an ambiguous time at its first occurrence.
    instants = [(wall - first).replace(tzinfo=UTC)]
    if first > second and every_hour:
        instants.append((wall - second).replace(tzinfo=UTC))
    return instants


def _day_start_bound(day: date, tz: ZoneInfo) -> datetime:
    """No wall time on ``day`` or later fires before this instant."""
    midnight = datetime(day.year, day.month, day.day)
    offsets = [midnight.replace(tzinfo=tz, fold=f).utcoffset() for f in (0, 1)]
    return (midnight - max(o for o in offsets if o is not None)).replace(tzinfo=UTC)


def _horizon(day: date) -> date:
    try:
        return day + timedelta(days=_HORIZON_DAYS)
    except OverflowError:
        return date.max


def _iter_fires(rule: CronRule, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after`` (UTC), increasing, no duplicates."""
    # Start a day early: a shifted or repeated wall time can cross midnight.
    day = after.astimezone(tz).date() - timedelta(days=1)
    give_up = _horizon(day)
    pending: list[datetime] = []
    last = after
    try:
        while day < give_up:
            if day.month not in rule.months:
                day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            else:
                if rule.matches_date(day):
                    give_up = _horizon(day)
                    for hour in rule.hours:
                        for minute in rule.minutes:
                            wall = datetime(day.year, day.month, day.day, hour, minute)
                            for instant in _instants(wall, tz, rule.every_hour):
                                heapq.heappush(pending, instant)
                day += timedelta(days=1)
            if not pending:
                continue
            # Wall times are produced day by day, but a shifted one can land after
            # the next day's first; hold each until no later day can undercut it.
            bound = _day_start_bound(day, tz)
            while pending and pending[0] < bound:
                instant = heapq.heappop(pending)
                if instant > last:
                    last = instant
                    yield instant
    except OverflowError:  # the end of the calendar, year 9999
        pass
    while pending:
        instant = heapq.heappop(pending)
        if instant > last:
            last = instant
            yield instant


def fire_times(rule: str, tz: ZoneInfo | str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, in UTC."""
    parsed, zone = parse_rule(rule), _zone(tz)
    result: list[datetime] = []
    if count <= 0:
        return result
    for instant in _iter_fires(parsed, zone, _utc(after, "after")):
        result.append(instant)
        if len(result) >= count:
            break
    return result


def next_fire(rule: str, tz: ZoneInfo | str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    times = fire_times(rule, tz, after, 1)
    if not times:
        raise _rule_error("never fires after that time")
    return times[0]


def _rfc3339_local(dt: datetime) -> str:
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        dt.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{dt.microsecond // 1000:03d}{sign}{hours:02d}:{mins:02d}"
    )


def preview(rule: Any, timezone: Any, count: Any, now: datetime) -> list[dict[str, str]]:
    """The next fire times after ``now`` as ``[{"local", "utc"}]``: ``local``
    is RFC 3339 with the zone's offset, ``utc`` RFC 3339 with ``Z``. ``count``
    is clamped to 1..100; bad rule, zone and count are reported together."""
    fields: dict[str, str] = {}
    parsed: CronRule | None = None
    zone: ZoneInfo | None = None
    try:
        parsed = parse_rule(rule)
    except ValidationFailed as exc:
        fields.update(exc.fields)
    try:
        zone = validate_timezone(timezone)
    except ValidationFailed as exc:
        fields.update(exc.fields)
    if isinstance(count, str) and count.strip().isdigit() and len(count.strip()) <= 6:
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int):
        fields["count"] = "must be a whole number"
    if fields or parsed is None or zone is None:
        raise ValidationFailed("invalid schedule preview", fields=fields)
    times = fire_times(parsed.text, zone, now, max(1, min(PREVIEW_MAX, count)))
    return [{"local": _rfc3339_local(t.astimezone(zone)), "utc": iso(t) or ""} for t in times]


def due_fires(
    rule: str, tz: ZoneInfo | str, next_run_at: datetime, now: datetime
) -> tuple[datetime | None, int, datetime]:
    """What the scheduler does for a schedule whose next fire is ``next_run_at``.

    Returns ``(fire_at, missed, next_run_at)``: every fire from ``next_run_at``
    up to and including ``now`` coalesces into one crew at ``fire_at`` (the
    latest of them), ``missed`` counts them, and the new ``next_run_at`` is the
    first fire after ``now``. When nothing is due: ``(None, 0, next_run_at)``.
    """
    parsed, zone = parse_rule(rule), _zone(tz)
    next_run_at, now = _utc(next_run_at, "next_run_at"), _utc(now, "now")
    if next_run_at > now:
        return None, 0, next_run_at
    latest: datetime | None = None
    missed = 0
    for instant in _iter_fires(parsed, zone, next_run_at - timedelta(microseconds=1)):
        if instant > now:
            return latest, missed, instant
        latest, missed = instant, missed + 1
    raise _rule_error("never fires")


def should_skip_for_overlap(overlap: str, active_job_count: int) -> bool:
    """Whether a fire is skipped: with ``overlap: skip``, while an earlier crew
    of the schedule still has a job waiting, ready or running."""
    return validate_overlap(overlap) == "skip" and active_job_count > 0
