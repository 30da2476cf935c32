"""capture_time: the one rule for comparing capture times (issue 32: penn91 mixes zoned and zone-less EXIF times)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from img2gps.capture_time import consecutive, parse_time, seconds_between, sequences, session_of, time_from_name
from img2gps.labelcheck.evidence import time_links

EDT = timezone(timedelta(hours=-4))


def test_seconds_between_zoned_naive_and_mixed():
    a, b = parse_time("2024-09-23T10:00:00-04:00"), parse_time("2024-09-23T14:05:00Z")
    assert seconds_between(a, b) == 300.0 and seconds_between(b, a) == -300.0  # instants, across zones
    n1, n2 = parse_time("2024:09:23 10:00:00"), parse_time("2024-09-23 10:00:30")
    assert seconds_between(n1, n2) == 30.0  # wall clock
    assert seconds_between(a, n2) is None and seconds_between(n1, b) is None  # zone unknown: not comparable
    assert seconds_between(a, n2, naive_zone=-4) == 30.0  # ... unless the caller knows it
    assert seconds_between(n1, b, naive_zone=EDT) == 300.0
    assert seconds_between(None, a) is None


def test_sequences_borrow_a_devices_single_zone_and_never_mix_otherwise():
    t = [parse_time(x) for x in ("2024-09-23T10:00:00-04:00", "2024-09-23T10:01:00", "2024-09-23T10:02:00-04:00",
                                 "2024-09-23T10:00:30", None, "2024-09-24T09:00:00")]
    steps, loose = consecutive(t, ["s"] * 6)
    assert steps == [(0, 3, 30.0), (3, 1, 30.0), (1, 2, 60.0)] and loose == []  # 5: alone on its day
    # two offsets on one device and day: the zone-less time cannot be placed among them
    t2 = [parse_time(x) for x in ("2024-09-23T14:05:00Z", "2024-09-23T16:06:00+02:00", "2024-09-23T14:06:30")]
    seqs, loose = sequences(t2, ["d"] * 3)
    assert sorted(s for s, _ in seqs) == [[0, 1], [2]] and loose == [2]
    assert consecutive(t2, ["d"] * 3)[0] == [(0, 1, 60.0)]
    # other devices never meet
    assert consecutive(t[:2], ["x", "y"])[0] == []


def test_time_links_on_penn91_like_mixed_times_do_not_crash():
    """penn91's Samsung wrote OffsetTime on 16 photos and not on 5 of the same day: the crash of issue 32."""
    t = [parse_time(x) for x in ("2024-09-23T15:00:00-04:00", "2024-09-23T15:00:40", "2024-09-23T15:01:30-04:00")]
    links = time_links(t, ["samsung SM-A315F"] * 3, 300)
    assert sorted(l.j for l in links[1]) == [0, 2] and np.isclose(links[1][0].dt_s, 40)


def test_file_name_times_and_sessions():
    assert time_from_name("IMG_20240923_153000.jpg") == datetime(2024, 9, 23, 15, 30, 0)
    assert time_from_name("20251399_250000.jpg") is None
    assert session_of(parse_time("2024-09-23T23:30:00-04:00"), "iPhone") == "2024-09-23 iPhone"  # local day
    assert session_of(None, "iPhone") is None
    assert parse_time("1727085900").isoformat() == "2024-09-23T10:05:00+00:00" and parse_time("soon") is None


def test_clocks_tell_two_phones_apart_and_keep_a_sleeping_phone_one():
    """capture_time.clocks (issue 30): between two photos of one phone its uptime advances by at most the time
    between them (less while it slept); a phone booted at another time is another camera."""
    from datetime import datetime, timedelta

    from img2gps.capture_time import clocks

    t0 = datetime(2024, 9, 23, 16, 0, 0)
    times = [t0 + timedelta(seconds=s) for s in (0, 30, 60, 90, 400, 430)]
    # phone A booted 8 days before, slept 200 s between 90 s and 400 s; phone B booted an hour before
    up = [691200.0, 3630.0, 691260.0, 3690.0, 691370.0, None]
    assert clocks(times, up, ["iPhone 13"] * 6) == [0, 1, 0, 1, 0, 0]
    assert clocks(times, up, ["a", "b", "a", "b", "a", "a"]) == [0, 0, 0, 0, 0, 0]  # told apart by name already
    assert clocks(times[:2], [100.0, 50.0], ["x", "x"]) == [0, 1]  # uptime went back: rebooted, or another phone


def test_penn91_iphone_13_photos_of_two_uploaders_are_one_phone_by_its_clock(penn91):
    """penn91's 62 iPhone 13 photos (iOS 17.6.1) come from two uploaders, interleaved in time: their MakerNote
    uptimes give one boot time, so clocks() keeps them one camera, and every other device stays one camera too."""
    from collections import Counter

    from img2gps.capture_time import clocks, parse_time
    from img2gps.photos import read_meta

    paths = sorted((penn91 / "images").iterdir())
    metas = [read_meta(p) for p in paths]
    cams = clocks([parse_time(m.time) for m in metas], [m.uptime_s for m in metas], [m.device for m in metas])
    iphone13 = [i for i, m in enumerate(metas) if m.device == "Apple iPhone 13 (software 17.6.1)"]
    assert len(iphone13) == 62 and all(metas[i].uptime_s is not None for i in iphone13)
    assert {paths[i].name.split("__")[0] for i in iphone13} == {"CeciliaChen98", "whuang06"}
    assert Counter(cams) == Counter({0: len(metas)})
