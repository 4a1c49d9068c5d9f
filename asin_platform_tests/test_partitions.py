from datetime import date

from asin_platform.partitions import (
    build_date_site_partitions,
    date_range,
    parse_partition_key,
    to_partition_key,
)
from asin_platform.settings import Settings


def test_partition_keys_are_date_pipe_site() -> None:
    key = to_partition_key(date(2025, 1, 7), "US")
    assert str(key) == "2025-01-07|US"
    assert parse_partition_key(key).day == date(2025, 1, 7)
    assert parse_partition_key("2025-01-07|DE").site == "DE"


def test_partitions_cover_every_site_each_day() -> None:
    keys = build_date_site_partitions(Settings()).get_partition_keys()
    first_day = [k for k in keys if k.startswith("2025-01-01|")]
    assert sorted(k.split("|")[1] for k in first_day) == ["DE", "JP", "UK", "US"]


def test_partitions_follow_the_settings_passed_in() -> None:
    partitions = build_date_site_partitions(Settings(sites=("FR", "US"), partitions_start=date(2026, 3, 1)))
    keys = partitions.get_partition_keys()
    assert keys[:2] == ["2026-03-01|FR", "2026-03-01|US"]
    assert not any(k < "2026-03-01" for k in keys)


def test_date_range_inclusive() -> None:
    assert date_range(date(2025, 1, 30), date(2025, 2, 1)) == [
        date(2025, 1, 30),
        date(2025, 1, 31),
        date(2025, 2, 1),
    ]
