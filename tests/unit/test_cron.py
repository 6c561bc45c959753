"""Schedule rules and fire times as pure logic: what a rule accepts, when it
fires across DST changes, what the preview shows, how missed fires coalesce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from crewboard import cron
from crewboard.errors import ValidationFailed

NY = "America/New_York"
LONDON = "Europe/London"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(rule: str, tz: str, after: datetime, count: int) -> list[datetime]:
    return cron.fire_times(rule, tz, after, count)


def local(times: list[datetime], tz: str) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).isoformat() for t in times]


# -- rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "normalized"),
    [
        ("* * * * *", "* * * * *"),
        ("0 0 * * *", "0 0 * * *"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 9-17 * * mon-fri", "0 9-17 * * mon-fri"),
        ("0 9-17 * * MON-FRI", "0 9-17 * * mon-fri"),
        ("0 0 1,15 * *", "0 0 1,15 * *"),
        ("30 4 1-7 * 1", "30 4 1-7 * 1"),
        ("0 0 * Jan,JUL *", "0 0 * jan,jul *"),
        ("0 0 * jan-mar/2 *", "0 0 * jan-mar/2 *"),
        ("0 12 * * sun,7", "0 12 * * sun,7"),
        ("23 0-20/2 * * *", "23 0-20/2 * * *"),
        ("0-59/10,5 * * * *", "0-59/10,5 * * * *"),
        ("05 04 * * *", "05 04 * * *"),
        ("  0\t0   *  * *  ", "0 0 * * *"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("*/60 * * * *", "*/60 * * * *"),
        ("@hourly", "@hourly"),
        ("@daily", "@daily"),
        ("@weekly", "@weekly"),
        ("@monthly", "@monthly"),
        ("@yearly", "@yearly"),
        (" @DAILY ", "@daily"),
    ],
)
def test_valid_rules_are_normalized(rule, normalized):
    assert cron.validate_rule(rule) == normalized


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ("", "expected 5 fields"),
        ("   ", "expected 5 fields"),
        ("* * * *", "got 4"),
        ("0 * * * * *", "got 6"),  # a seconds field
        ("0 0 * * * * 2030", "got 7"),
        ("@reboot", "not one of @hourly"),
        ("@midnight", "not one of @hourly"),
        ("@annually", "not one of @hourly"),
        ("@every 5m", "not one of @hourly"),
        ("0 0 L * *", "not supported"),
        ("0 0 15W * *", "not supported"),
        ("0 0 * * 5L", "not supported"),
        ("0 0 * * 1#2", "unexpected character '#'"),
        ("H * * * *", "not supported"),
        ("0 0 ? * *", "unexpected character '?'"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month: 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month: 32"),
        ("0 0 * 13 *", "month: 13"),
        ("0 0 * 0 *", "month: 0"),
        ("0 0 * * 8", "day-of-week: 8"),
        ("99999999999 * * * *", "out of range"),
        ("*/0 * * * *", "step '0'"),
        ("*/61 * * * *", "step '61'"),
        ("0 0 * * */8", "step '8'"),
        ("*/x * * * *", "step 'x'"),
        ("1/2 * * * *", "a step needs a range or '*'"),
        ("5-1 * * * *", "goes backwards"),
        ("0 0 * * fri-mon", "goes backwards"),
        ("1-2-3 * * * *", "is not a range"),
        ("-1 * * * *", "is not a range"),
        ("0,,5 * * * *", "empty list item"),
        ("0, * * * *", "empty list item"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 apr,jun,sep,nov *", "never fires"),
        ("0 0 * * jan", "not a number or a day name"),
        ("0 0 * mon *", "not a number or a month name"),
        ("0 0 * * sunday", "not a number or a day name"),
        ("mon * * * *", "minute: 'mon' is not a number"),
        ("６ * * * *", "unexpected character"),
        ("0\n0 * * *", "one line"),
        ("0 0 * * *\x00", "one line"),
        ("0" * 300, "at most 200 characters"),
    ],
)
def test_invalid_rules_are_refused_naming_the_problem(rule, complaint):
    with pytest.raises(ValidationFailed) as caught:
        cron.validate_rule(rule)
    assert set(caught.value.fields) == {"rule"}
    assert complaint in caught.value.fields["rule"]


@pytest.mark.parametrize("rule", [None, 5, ["* * * * *"], b"* * * * *"])
def test_a_rule_must_be_a_string(rule):
    with pytest.raises(ValidationFailed) as caught:
        cron.validate_rule(rule)
    assert caught.value.fields == {"rule": "must be a string"}


# -- time zones -------------------------------------------------------------


@pytest.mark.parametrize("name", [NY, LONDON, "UTC", "Etc/GMT+5", "Asia/Kolkata"])
def test_real_zones_are_accepted(name):
    assert cron.validate_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        None,
        5,
        "localtime",
        "posixrules",
        "/etc/localtime",
        "../../etc/passwd",
        "America/../Europe/London",
        "america/new_york",
        "Mars/Olympus_Mons",
        "Europe/London ",
        "America/New_York\x00",
        "Europe\\London",
        "x" * 100,
    ],
)
def test_anything_but_an_iana_zone_is_refused(name):
    with pytest.raises(ValidationFailed) as caught:
        cron.validate_timezone(name)
    assert set(caught.value.fields) == {"timezone"}


# -- plain fire times -------------------------------------------------------


def test_fire_times_are_strictly_after_the_given_time():
    assert fires("*/15 * * * *", "UTC", utc(2026, 1, 1, 0, 7), 4) == [
        utc(2026, 1, 1, 0, 15),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 0, 45),
        utc(2026, 1, 1, 1, 0),
    ]
    # Exactly on a fire time: that one has already happened.
    assert cron.next_fire("*/15 * * * *", "UTC", utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)


def test_weekday_names_ranges_and_seven_for_sunday():
    # 2026-01-02 is a Friday.
    workdays = fires("0 9 * * mon-fri", "UTC", utc(2026, 1, 2, 10), 2)
    assert workdays == [utc(2026, 1, 5, 9), utc(2026, 1, 6, 9)]
    assert fires("0 0 * * 7", "UTC", utc(2026, 1, 1), 1) == [utc(2026, 1, 4)]
    assert fires("0 0 * * sun", "UTC", utc(2026, 1, 1), 1) == [utc(2026, 1, 4)]
    assert fires("0 0 * * 5-7", "UTC", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 2),
        utc(2026, 1, 3),
        utc(2026, 1, 4),
    ]


def test_month_names():
    assert fires("0 0 1 jan,jul *", "UTC", utc(2026, 2, 1), 2) == [utc(2026, 7, 1), utc(2027, 1, 1)]


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # Vixie cron: the 13th of any month, and every Friday.
    times = fires("0 0 13 * fri", "UTC", utc(2026, 1, 1), 4)
    assert times == [utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13), utc(2026, 1, 16)]


def test_a_stepped_day_of_month_with_a_weekday_means_both():
    # Vixie cron ANDs the day fields when either starts with '*': odd days
    # that are Mondays. croniter ORs them here; the product follows Vixie.
    assert fires("0 0 */2 * mon", "UTC", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 5),
        utc(2026, 1, 19),
        utc(2026, 2, 9),
    ]


def test_leap_day_rule_waits_for_a_leap_year():
    assert fires("0 0 29 feb *", "UTC", utc(2026, 1, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("@hourly", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        ("@daily", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("@weekly", [utc(2026, 1, 4), utc(2026, 1, 11)]),  # Sundays
        ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ],
)
def test_macros(rule, expected):
    assert fires(rule, "UTC", utc(2026, 1, 1, 0, 30), 2) == expected


def test_fire_times_are_computed_in_the_schedules_zone():
    assert cron.next_fire("0 9 * * *", LONDON, utc(2026, 1, 10)) == utc(2026, 1, 10, 9)
    assert cron.next_fire("0 9 * * *", LONDON, utc(2026, 7, 10)) == utc(2026, 7, 10, 8)
    assert cron.next_fire("0 9 * * *", NY, utc(2026, 7, 10)) == utc(2026, 7, 10, 13)
    assert cron.next_fire("@weekly", "Asia/Kolkata", utc(2026, 1, 1)) == utc(2026, 1, 3, 18, 30)


def test_after_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_fire("@daily", "UTC", datetime(2026, 1, 1))


CROSS_CHECKED = [
    "* * * * *",
    "*/7 * * * *",
    "0 * * * *",
    "15,45 3-5 * * *",
    "0 0 * * *",
    "30 12 1 * *",
    "0 0 1 1 *",
    "0 9-17/2 * * mon-fri",
    "5 4 * * sun",
    "0 22 * * 1-5",
    "0 0 13 * fri",
    "0 0 1,15 * 3",
    "59 23 31 * *",
    "0 0 29 2 *",
    "0 6 * jan-mar/2 *",
    "10-20/5 */3 * * *",
    "0 0 * * 0,7",
]


@pytest.mark.parametrize("rule", CROSS_CHECKED)
def test_agrees_with_croniter_in_utc(rule):
    # Where croniter and Vixie agree (no DST, no stepped day field beside a
    # weekday), the two must give the same times.
    start = utc(2026, 2, 27, 13, 7)
    it = croniter(rule, start)
    expected = [it.get_next(datetime) for _ in range(40)]
    assert fires(rule, "UTC", start, 40) == expected


# -- DST ----------------------------------------------------------------------
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
# Europe/London:    2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.


def test_spring_forward_gap_fires_once_at_the_shifted_time_new_york():
    times = fires("30 2 * * *", NY, utc(2026, 3, 7, 12), 2)
    assert times == [utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)]
    assert local(times, NY) == ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_spring_forward_gap_fires_once_at_the_shifted_time_london():
    times = fires("30 1 * * *", LONDON, utc(2026, 3, 28, 12), 2)
    assert local(times, LONDON) == ["2026-03-29T02:30:00+01:00", "2026-03-30T01:30:00+01:00"]


def test_spring_forward_every_hour_rule_has_no_duplicate():
    # 02:00 does not exist; its shifted time is 03:00 EDT, which fires once.
    times = fires("0 * * * *", NY, utc(2026, 3, 8, 4, 30), 4)
    assert local(times, NY) == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_spring_forward_minutes_in_the_gap_keep_their_order():
    times = fires("*/20 2-3 * * *", NY, utc(2026, 3, 8, 5), 4)
    assert local(times, NY) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:20:00-04:00",
        "2026-03-08T03:40:00-04:00",
        "2026-03-09T02:00:00-04:00",
    ]


def test_spring_forward_step_in_the_hour_field():
    times = fires("0 */2 * * *", NY, utc(2026, 3, 8, 4, 30), 3)
    assert local(times, NY) == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:00 shifted
        "2026-03-08T04:00:00-04:00",
    ]


def test_fall_back_fixed_hour_fires_once_new_york():
    times = fires("30 1 * * *", NY, utc(2026, 10, 31, 12), 2)
    assert local(times, NY) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_fall_back_fixed_hour_fires_once_london():
    times = fires("30 1 * * *", LONDON, utc(2026, 10, 24, 12), 2)
    assert local(times, LONDON) == ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]


def test_fall_back_fixed_hour_with_a_minute_step_fires_once_per_minute():
    times = fires("*/30 1 * * *", NY, utc(2026, 11, 1, 4), 3)
    assert local(times, NY) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:00:00-05:00",
    ]


def test_fall_back_every_hour_fires_at_every_real_instant_new_york():
    times = fires("30 * * * *", NY, utc(2026, 11, 1, 4), 4)
    assert times == [
        utc(2026, 11, 1, 4, 30),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 7, 30),
    ]
    assert local(times, NY) == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


def test_fall_back_every_hour_fires_at_every_real_instant_london():
    times = fires("@hourly", LONDON, utc(2026, 10, 24, 22, 30), 4)
    assert times == [
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 2),
    ]
    assert local(times, LONDON)[1:3] == ["2026-10-25T01:00:00+01:00", "2026-10-25T01:00:00+00:00"]


def test_fall_back_step_in_the_hour_field_fires_at_every_real_instant():
    # Odd hours: 01:15 happens twice, and both fire.
    times = fires("15 1-23/2 * * *", NY, utc(2026, 11, 1, 4), 3)
    assert local(times, NY) == [
        "2026-11-01T01:15:00-04:00",
        "2026-11-01T01:15:00-05:00",
        "2026-11-01T03:15:00-05:00",
    ]
    times = fires("15 1-23/2 * * *", LONDON, utc(2026, 10, 24, 23), 3)
    assert local(times, LONDON) == [
        "2026-10-25T01:15:00+01:00",
        "2026-10-25T01:15:00+00:00",
        "2026-10-25T03:15:00+00:00",
    ]


def test_fall_back_even_hour_step_fires_on_real_hours_only():
    times = fires("0 */2 * * *", NY, utc(2026, 11, 1, 3), 3)
    assert local(times, NY) == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T04:00:00-05:00",
    ]


def test_every_minute_over_a_fall_back_counts_the_repeated_hour_twice():
    times = fires("* * * * *", NY, utc(2026, 11, 1, 4) - timedelta(minutes=1), 180)
    assert times == [utc(2026, 11, 1, 4) + timedelta(minutes=m) for m in range(180)]


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        (NY, utc(2026, 1, 1)),
        (LONDON, utc(2026, 1, 1)),
        ("Australia/Lord_Howe", utc(2026, 1, 1)),  # half-hour DST
        ("America/Santiago", utc(2026, 1, 1)),  # changes at midnight
        ("Pacific/Apia", utc(2011, 12, 1)),  # skipped 2011-12-30 entirely
    ],
)
@pytest.mark.parametrize(
    "rule", ["0 * * * *", "30 1 * * *", "0 0 * * *", "*/20 0-3 * * *", "15 */2 * * *"]
)
def test_fire_times_always_increase(tz, start, rule):
    times = fires(rule, tz, start, 3000)
    assert all(a < b for a, b in pairwise(times))
    assert times[0] > start


def reference_fires(rule: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every real minute whose local wall time matches the rule, the second
    pass through a repeated hour only for a rule that fires every hour."""
    parsed, zone = cron.parse_rule(rule), ZoneInfo(tz)
    found = []
    t = start + timedelta(minutes=1)
    while t < end:
        wall = t.astimezone(zone)
        if (
            parsed.matches_date(wall.date())
            and wall.hour in parsed.hours
            and wall.minute in parsed.minutes
            and (wall.fold == 0 or parsed.every_hour)
        ):
            found.append(t)
        t += timedelta(minutes=1)
    return found


def skipped_wall_time(t: datetime, tz: str, rule: str) -> bool:
    """Whether ``t`` is the shifted time of a wall time a spring-forward skipped."""
    zone, parsed = ZoneInfo(tz), cron.parse_rule(rule)
    before = (t - timedelta(hours=3)).astimezone(zone).utcoffset()
    after = t.astimezone(zone).utcoffset()
    assert before is not None and after is not None
    wall = t.astimezone(zone).replace(tzinfo=None) - (after - before)
    exists = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
    return (
        not exists
        and parsed.matches_date(wall.date())
        and wall.hour in parsed.hours
        and wall.minute in parsed.minutes
    )


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        (NY, utc(2026, 3, 7, 12)),
        (NY, utc(2026, 10, 31, 12)),
        (LONDON, utc(2026, 3, 28, 12)),
        (LONDON, utc(2026, 10, 24, 12)),
        ("Australia/Lord_Howe", utc(2026, 4, 4)),  # falls back 30 minutes
        ("Australia/Lord_Howe", utc(2026, 10, 3)),  # springs forward 30 minutes
    ],
)
@pytest.mark.parametrize(
    "rule", ["*/10 * * * *", "45 1,2 * * *", "0-40/20 */2 * * *", "15,45 0-3 * * *", "@hourly"]
)
def test_dst_days_match_a_minute_by_minute_reference(tz, start, rule):
    end = start + timedelta(days=2)
    times = [t for t in fires(rule, tz, start, 1000) if t < end]
    expected = reference_fires(rule, tz, start, end)
    assert set(expected) <= set(times)
    assert all(skipped_wall_time(t, tz, rule) for t in set(times) - set(expected))


# -- preview ------------------------------------------------------------------


def test_preview_lists_local_and_utc_times():
    now = utc(2026, 3, 7, 12)
    assert cron.preview("30 2 * * *", NY, 2, now) == [
        {"local": "2026-03-08T03:30:00.000-04:00", "utc": "2026-03-08T07:30:00.000Z"},
        {"local": "2026-03-09T02:30:00.000-04:00", "utc": "2026-03-09T06:30:00.000Z"},
    ]
    assert cron.preview("@daily", "UTC", 1, now) == [
        {"local": "2026-03-08T00:00:00.000+00:00", "utc": "2026-03-08T00:00:00.000Z"}
    ]


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, 1), (-5, 1), (1, 1), (7, 7), (100, 100), (101, 100), (10**9, 100), ("3", 3)],
)
def test_preview_count_is_clamped(count, shown):
    assert len(cron.preview("* * * * *", "UTC", count, utc(2026, 1, 1))) == shown


def test_preview_reports_every_bad_parameter_at_once():
    with pytest.raises(ValidationFailed) as caught:
        cron.preview("0 0 L * *", "Mars/Base", "lots", utc(2026, 1, 1))
    assert set(caught.value.fields) == {"rule", "timezone", "count"}


@pytest.mark.parametrize("count", [None, 2.5, True, "", "1e3"])
def test_preview_count_must_be_a_whole_number(count):
    with pytest.raises(ValidationFailed) as caught:
        cron.preview("@daily", "UTC", count, utc(2026, 1, 1))
    assert set(caught.value.fields) == {"count"}


# -- coalescing and overlap ---------------------------------------------------


def test_nothing_is_due_before_the_next_fire():
    next_run = utc(2026, 1, 1, 10)
    assert cron.due_fires("0 * * * *", "UTC", next_run, utc(2026, 1, 1, 9, 59)) == (
        None,
        0,
        next_run,
    )


def test_a_fire_is_due_at_its_own_time():
    due = cron.due_fires("0 * * * *", "UTC", utc(2026, 1, 1, 10), utc(2026, 1, 1, 10))
    assert due == (utc(2026, 1, 1, 10), 1, utc(2026, 1, 1, 11))


def test_three_missed_fires_coalesce_into_one_crew():
    fire_at, missed, next_run = cron.due_fires(
        "0 * * * *", "UTC", utc(2026, 1, 1, 10), utc(2026, 1, 1, 12, 30)
    )
    assert (fire_at, missed) == (utc(2026, 1, 1, 12), 3)
    assert next_run == utc(2026, 1, 1, 13)


def test_missed_fires_across_a_fall_back_are_each_counted():
    # 00:00, 01:00 EDT, 01:00 EST, 02:00 EST: four real instants.
    fire_at, missed, next_run = cron.due_fires(
        "0 * * * *", NY, utc(2026, 11, 1, 4), utc(2026, 11, 1, 7, 1)
    )
    assert (fire_at, missed, next_run) == (utc(2026, 11, 1, 7), 4, utc(2026, 11, 1, 8))


def test_a_long_outage_still_coalesces_into_one_crew():
    fire_at, missed, next_run = cron.due_fires(
        "@daily", LONDON, utc(2026, 1, 1), utc(2026, 12, 31, 12)
    )
    assert (fire_at, missed, next_run) == (utc(2026, 12, 31), 365, utc(2027, 1, 1))


@pytest.mark.parametrize(
    ("rule", "tz", "start"),
    [
        ("*/20 * * * *", NY, utc(2026, 3, 6)),
        ("*/20 * * * *", NY, utc(2026, 10, 30)),
        ("30 1 * * *", LONDON, utc(2026, 3, 27)),
        ("0 1-23/2 * * *", LONDON, utc(2026, 10, 23)),
    ],
)
def test_a_simulated_scheduler_loses_and_doubles_no_fire(rule, tz, start):
    """Tick a fake clock unevenly through a DST change: every fire time is
    counted exactly once, and each crew is spawned at a distinct fire time."""
    end = start + timedelta(days=5)
    now = start
    next_run = cron.next_fire(rule, tz, now)
    spawned: list[datetime] = []
    counted = 0
    step = 0
    while now < end:
        step += 1
        now += timedelta(minutes=(7, 45, 190, 1)[step % 4] * (20 if step % 37 == 0 else 1))
        fire_at, missed, next_run = cron.due_fires(rule, tz, next_run, now)
        assert next_run > now
        if fire_at is not None:
            assert fire_at <= now
            spawned.append(fire_at)
            counted += missed
    expected = cron.fire_times(rule, tz, start, 10_000)
    expected = [t for t in expected if t <= spawned[-1]]
    assert counted == len(expected)
    assert len(set(spawned)) == len(spawned)
    assert set(spawned) <= set(expected)


@pytest.mark.parametrize(
    ("overlap", "active", "skip"),
    [
        ("skip", 0, False),
        ("skip", 1, True),
        ("skip", 7, True),
        ("allow", 0, False),
        ("allow", 3, False),
    ],
)
def test_overlap(overlap, active, skip):
    assert cron.should_skip_for_overlap(overlap, active) is skip


@pytest.mark.parametrize("overlap", ["", "SKIP", "queue", None, 1])
def test_unknown_overlap_modes_are_refused(overlap):
    with pytest.raises(ValidationFailed) as caught:
        cron.validate_overlap(overlap)
    assert set(caught.value.fields) == {"overlap"}
