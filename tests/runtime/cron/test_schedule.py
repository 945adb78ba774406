"""Schedules: next fire instants (DST in two zones), stagger, parsing of user input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fencepost import InvalidScheduleError
from fencepost.runtime.cron import (
    CRON_NICKNAMES,
    DEFAULT_STAGGER_WINDOW_S,
    AtSchedule,
    CronSchedule,
    EverySchedule,
    cron_fields,
    default_stagger_s,
    is_top_of_hour,
    next_run_after,
    parse_at,
    parse_cron,
    parse_duration_s,
    parse_every,
    schedule_from_json,
    schedule_from_text,
    schedule_to_json,
)

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def fires(schedule, start: datetime, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = next_run_after(schedule, t)
        assert t is not None and t.tzinfo is UTC
        out.append(t.strftime("%Y-%m-%dT%H:%M"))
    return out


# ---- DST: Invariant CRON-I1 ----------------------------------------------------------------


# Invariant CRON-I1
def test_a_berlin_0230_job_runs_once_at_0300_on_the_spring_forward_day_cron_i1():
    # 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 does not exist
    s = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert fires(s, datetime(2026, 3, 27, 12, tzinfo=UTC), 4) == [
        "2026-03-28T01:30",  # 02:30 CET
        "2026-03-29T01:00",  # the first valid instant after the gap: 03:00 CEST
        "2026-03-30T00:30",  # 02:30 CEST
        "2026-03-31T00:30",
    ]


# Invariant CRON-I1
def test_a_berlin_0230_job_runs_once_not_twice_in_the_autumn_overlap_cron_i1():
    # 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice
    s = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert fires(s, datetime(2026, 10, 23, 12, tzinfo=UTC), 3) == [
        "2026-10-24T00:30",
        "2026-10-25T00:30",  # the first 02:30 (CEST)
        "2026-10-26T01:30",  # the next day, 02:30 CET: no second run at 01:30 UTC
    ]
    # asked from inside the second pass of the overlap, it still waits for the next day
    assert next_run_after(s, datetime(2026, 10, 25, 1, 10, tzinfo=UTC)) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


# Invariant CRON-I1
def test_new_york_spring_gap_and_autumn_overlap_give_the_right_instants_cron_i1():
    gap = CronSchedule("30 2 * * *", "America/New_York")  # 2026-03-08 02:00 EST -> 03:00 EDT
    assert fires(gap, datetime(2026, 3, 7, 12, tzinfo=UTC), 3) == [
        "2026-03-08T07:00",  # 03:00 EDT
        "2026-03-09T06:30",
        "2026-03-10T06:30",
    ]
    overlap = CronSchedule("30 1 * * *", "America/New_York")  # 2026-11-01 01:xx twice
    assert fires(overlap, datetime(2026, 10, 31, 12, tzinfo=UTC), 3) == [
        "2026-11-01T05:30",  # 01:30 EDT, once
        "2026-11-02T06:30",  # 01:30 EST the next day
        "2026-11-03T06:30",
    ]


# Invariant CRON-I1
def test_hourly_expressions_follow_elapsed_time_across_both_transitions_cron_i1():
    hourly = CronSchedule("0 * * * *", "Europe/Berlin")
    autumn = fires(hourly, datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4)
    assert autumn == [
        "2026-10-25T00:00",
        "2026-10-25T01:00",
        "2026-10-25T02:00",
        "2026-10-25T03:00",
    ]
    spring = fires(hourly, datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 3)
    assert spring == ["2026-03-29T00:00", "2026-03-29T01:00", "2026-03-29T02:00"]


def test_a_daily_job_in_a_zone_keeps_its_wall_clock_time_across_the_change():
    s = CronSchedule("0 7 * * *", "Europe/Berlin")
    assert fires(s, datetime(2026, 3, 28, 12, tzinfo=UTC), 2) == [
        "2026-03-29T05:00",  # 07:00 CEST
        "2026-03-30T05:00",
    ]
    assert fires(s, datetime(2026, 3, 27, 12, tzinfo=UTC), 1) == ["2026-03-28T06:00"]  # CET


def test_next_run_after_is_strictly_after_and_always_utc():
    s = CronSchedule("0 7 * * *", "UTC")
    at7 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert next_run_after(s, at7) == at7 + timedelta(days=1)
    assert next_run_after(s, at7 - timedelta(microseconds=1)) == at7


# ---- at and every --------------------------------------------------------------------------


def test_an_at_schedule_fires_once_then_never():
    s = AtSchedule(NOW + timedelta(minutes=20))
    assert next_run_after(s, NOW) == NOW + timedelta(minutes=20)
    assert next_run_after(s, NOW + timedelta(minutes=20)) is None


def test_every_fires_on_its_anchor_grid():
    s = EverySchedule(3600.0, NOW)
    assert next_run_after(s, NOW - timedelta(hours=5)) == NOW
    assert next_run_after(s, NOW) == NOW + timedelta(hours=1)
    assert next_run_after(s, NOW + timedelta(minutes=90)) == NOW + timedelta(hours=2)


# ---- stagger: Invariant CRON-I2 ------------------------------------------------------------


# Invariant CRON-I2
def test_stagger_is_deterministic_bounded_and_only_for_top_of_hour_cron_i2():
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(500)]
    offsets = [default_stagger_s(i, "0 * * * *") for i in ids]
    assert offsets == [default_stagger_s(i, "0 * * * *") for i in ids]
    assert all(0 <= o < DEFAULT_STAGGER_WINDOW_S and o == int(o) for o in offsets)
    assert len(set(offsets)) > 100  # spread, not clumped
    assert default_stagger_s(ids[0], "30 7 * * *") == 0
    assert default_stagger_s(ids[0], "*/15 * * * *") == 0
    assert default_stagger_s(ids[1], "0 7 * * *", window_s=0) == 0


# Invariant CRON-I2
def test_a_staggered_schedule_fires_at_the_slot_plus_its_offset_cron_i2():
    s = CronSchedule("0 * * * *", "UTC", stagger_s=90)
    assert next_run_after(s, NOW) == NOW + timedelta(seconds=90)
    assert next_run_after(s, NOW + timedelta(seconds=90)) == NOW + timedelta(hours=1, seconds=90)


# ---- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("20m", 1200), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_durations_read_the_forms_the_cli_accepts(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "20x", "-5m", "0", "m20", "1h junk"])
def test_bad_durations_are_refused_with_the_forms_to_use(text):
    with pytest.raises(InvalidScheduleError) as err:
        parse_duration_s(text)
    assert "duration" in str(err.value) or "positive" in str(err.value) or "empty" in str(err.value)


def test_at_reads_relative_and_iso_times_utc_unless_a_zone_is_given():
    assert parse_at("20m", now=NOW).at == NOW + timedelta(minutes=20)
    assert parse_at("+1d", now=NOW).at == NOW + timedelta(days=1)
    assert parse_at("2026-03-03T07:00", now=NOW).at == datetime(2026, 3, 3, 7, tzinfo=UTC)
    assert parse_at("2026-03-03T07:00Z", now=NOW).at == datetime(2026, 3, 3, 7, tzinfo=UTC)
    berlin = parse_at("2026-03-03T07:00", now=NOW, tz="Europe/Berlin").at
    assert berlin == datetime(2026, 3, 3, 6, tzinfo=UTC)
    offset = parse_at("2026-03-03T07:00-05:00", now=NOW).at
    assert offset == datetime(2026, 3, 3, 12, tzinfo=UTC)


def test_an_at_in_the_past_or_unreadable_is_refused_saying_why():
    with pytest.raises(InvalidScheduleError, match="not in the future"):
        parse_at("2020-01-01T00:00", now=NOW)
    with pytest.raises(InvalidScheduleError, match="cannot read 'tomorrow'"):
        parse_at("tomorrow", now=NOW)


def test_every_below_the_minimum_is_refused():
    with pytest.raises(InvalidScheduleError, match="shorter than the minimum"):
        parse_every("5s", now=NOW)
    assert parse_every("1h", now=NOW) == EverySchedule(3600.0, NOW)


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("0 7 * *", "UTC", "has 4 fields"),
        ("0 0 7 * * *", "UTC", "has 6 fields"),
        ("61 * * * *", "UTC", "invalid cron expression"),
        ("0 7 31 2 *", "UTC", "Bad day-of-month"),
        ("0 7 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("0 7 * * *", "../../etc/passwd", "unknown time zone"),
    ],
)
def test_invalid_cron_schedules_are_refused_with_a_clear_message(expr, tz, message):
    with pytest.raises(InvalidScheduleError, match=message) as err:
        parse_cron(expr, tz, now=NOW)
    assert isinstance(err.value, ValueError)


def test_schedules_round_trip_through_json():
    for s in (
        AtSchedule(NOW),
        EverySchedule(600.0, NOW),
        CronSchedule("0 7 * * 1-5", "Europe/Berlin", 42.0),
    ):
        assert schedule_from_json(schedule_to_json(s)) == s


def test_parse_since_takes_a_duration_ago_or_an_iso_time_and_names_the_key():
    from datetime import UTC, datetime, timedelta

    from fencepost import InvalidScheduleError
    from fencepost.runtime.cron import parse_since

    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    assert parse_since("2h30m", now) == now - timedelta(hours=2, minutes=30)
    assert parse_since("2026-03-01T07:00", now) == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert parse_since("2026-03-01T07:00+01:00", now).utcoffset() == timedelta(hours=1)
    with pytest.raises(InvalidScheduleError) as info:
        parse_since("yesterday-ish", now)
    assert info.value.key == "since"


# ---- nicknames: Invariant CRON-I14 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "fields", "first", "second"),
    [
        ("@hourly", "0 * * * *", "2026-03-02T07:00", "2026-03-02T08:00"),
        ("@daily", "0 0 * * *", "2026-03-03T00:00", "2026-03-04T00:00"),
        ("@midnight", "0 0 * * *", "2026-03-03T00:00", "2026-03-04T00:00"),
        ("@weekly", "0 0 * * 0", "2026-03-08T00:00", "2026-03-15T00:00"),
        ("@monthly", "0 0 1 * *", "2026-04-01T00:00", "2026-05-01T00:00"),
        ("@yearly", "0 0 1 1 *", "2027-01-01T00:00", "2028-01-01T00:00"),
        ("@annually", "0 0 1 1 *", "2027-01-01T00:00", "2028-01-01T00:00"),
        (" @Daily ", "0 0 * * *", "2026-03-03T00:00", "2026-03-04T00:00"),
    ],
)
def test_cron_nicknames_are_stored_as_written_and_fire_as_their_five_fields_cron_i14(
    written, fields, first, second
):
    schedule = parse_cron(written, "UTC", now=NOW)
    assert schedule.expr == written.strip().lower()  # readable in cron list, not "0 0 * * *"
    assert cron_fields(schedule.expr) == fields
    assert fires(schedule, NOW, 2) == [first, second]
    assert fires(parse_cron(fields, "UTC", now=NOW), NOW, 2) == [first, second]
    assert schedule_from_json(schedule_to_json(schedule)) == schedule


def test_a_daily_nickname_in_a_zone_keeps_local_midnight_and_gets_a_stagger_cron_i14():
    berlin = parse_cron("@daily", "Europe/Berlin", now=NOW)
    assert fires(berlin, NOW, 1) == ["2026-03-02T23:00"]  # 00:00 CET
    assert all(is_top_of_hour(n) for n in CRON_NICKNAMES)
    assert 0 < default_stagger_s("job-1", "@daily") < DEFAULT_STAGGER_WINDOW_S


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("@reboot", "does not run jobs at start-up"),
        ("@every 1h", "use --every"),
        ("@fortnightly", "the nicknames are @yearly"),
        ("@daily 7", "not a nickname"),
        ("0 7 * *", "or a nickname: @hourly"),
    ],
)
def test_unknown_nicknames_are_refused_saying_what_to_write_cron_i14(expr, message):
    with pytest.raises(InvalidScheduleError, match=message) as err:
        parse_cron(expr, "UTC", now=NOW)
    assert err.value.key == "cron"


# ---- where a time zone applies: Invariant CRON-I15 -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "tz", "message"),
    [
        ("every", "1h", "Mars/Base", "--tz 'Mars/Base' does not apply to an every schedule"),
        ("every", "1h", "UTC", "--tz 'UTC' does not apply to an every schedule"),
        ("at", "20m", "Europe/Berlin", "does not apply to the relative time '20m'"),
        ("at", "+2h", "Europe/Berlin", "does not apply to the relative time"),
        ("at", "2026-03-29T07:00+02:00", "Europe/Berlin", "carries its own UTC offset"),
        ("at", "2026-03-29T07:00Z", "UTC", "carries its own UTC offset"),
    ],
)
def test_a_time_zone_where_it_changes_nothing_is_refused_naming_the_option_cron_i15(
    kind, text, tz, message
):
    with pytest.raises(InvalidScheduleError, match=message) as err:
        schedule_from_text(kind, text, tz=tz, now=NOW)
    assert err.value.key == "tz" and "drop --tz" in str(err.value)
    with pytest.raises(InvalidScheduleError, match=r"drop schedule\.tz"):
        schedule_from_text(kind, text, tz=tz, now=NOW, tz_option="schedule.tz")


def test_a_time_zone_is_used_where_it_decides_the_instant_cron_i15():
    local = schedule_from_text("at", "2026-03-03T07:00", tz="Europe/Berlin", now=NOW)
    assert local == AtSchedule(datetime(2026, 3, 3, 6, tzinfo=UTC))
    offset = schedule_from_text("at", "2026-03-03T07:00+02:00", tz=None, now=NOW)
    assert offset == AtSchedule(datetime(2026, 3, 3, 5, tzinfo=UTC))
    assert schedule_from_text("every", "1h", tz=None, now=NOW) == EverySchedule(3600.0, NOW)
    cron = schedule_from_text("cron", "@daily", tz="Asia/Tokyo", now=NOW)
    assert cron == CronSchedule("@daily", "Asia/Tokyo")
