"""Pure core of the scan's read budget: item sizes, page capacity, the limiter on a simulated clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_assets.export.rate_limiter import (
    PageCapacity,
    ReadCapacityLimiter,
    estimate_read_units,
    item_size_bytes,
    page_limit_for,
    read_rate_limit,
)


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"a": {"S": "abc"}}, 1 + 3),
        ({"é": {"S": "€"}}, 2 + 3),  # UTF-8 bytes, names included
        ({"n": {"N": "123"}}, 1 + 3),  # 3 significant digits: 2 bytes + 1
        ({"n": {"N": "0.00120"}}, 1 + 2),  # leading and trailing zeros trimmed
        ({"n": {"N": "-1E+100"}}, 1 + 2),
        ({"b": {"B": b"\x00" * 10}}, 1 + 10),
        ({"b": {"B": "AAAAAAAAAAAAAA=="}}, 1 + 10),  # base64 text as in export lines
        ({"t": {"BOOL": True}, "z": {"NULL": True}}, 2 + 2),
        ({"s": {"SS": ["ab", "c"]}}, 1 + 3),
        ({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}, 1 + 3 + (2 + 1) + (2 + 1)),
        ({"m": {"M": {"k": {"S": "v"}}}}, 1 + 3 + (1 + 1 + 1)),
    ],
)
def test_item_size_follows_dynamodb_rules(item, size):
    assert item_size_bytes(item) == size


def test_page_units_round_up_to_4kb_and_halve_for_eventual_consistency():
    kb = {"p": {"S": "x" * 4095}}  # 4096 bytes with its name
    assert estimate_read_units([]) == 0.5
    assert estimate_read_units([kb]) == 0.5
    assert estimate_read_units([kb, {"q": {"S": ""}}]) == 1.0
    assert estimate_read_units([kb] * 256) == 128.0  # a 1 MB page
    assert estimate_read_units([kb] * 256, consistent=True) == 256.0


def test_auto_capacity_switches_to_estimates_once_the_reported_figure_is_fake():
    pages = PageCapacity("auto")
    assert pages.units(3.0, 3.0) == 3.0  # plausible: trusted
    assert pages.units(1.0, 12.5) == 12.5  # moto's constant 1.0 for a 100 KB page
    assert pages.units(12.5, 12.5) == 12.5 and pages.using == "estimated"  # stays on estimates
    assert pages.reported_pages == 1 and pages.estimated_pages == 2
    assert PageCapacity("auto").units(None, 2.0) == 2.0  # absent
    assert PageCapacity("reported").units(1.0, 50.0) == 1.0
    with pytest.raises(ValueError, match="capacity source 'guess'"):
        PageCapacity("guess")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _max_window(events: list[tuple[float, float]], window: float) -> float:
    best = 0.0
    for i, (start, _) in enumerate(events):
        best = max(best, sum(u for t, u in events[i:] if t < start + window))
    return best


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(5, 500),
    pages=st.lists(st.tuples(st.floats(0.5, 40), st.floats(0.5, 40), st.floats(0.0, 2.0)), min_size=5, max_size=200),
)
def test_limiter_never_exceeds_budget_plus_one_misjudged_page_in_any_window(rate, pages):
    clock = FakeClock()
    limiter = ReadCapacityLimiter(rate, clock=clock, sleep=clock.sleep)
    sent = []
    for expected, units, latency in pages:
        limiter.acquire(expected)
        sent.append((clock.now, units))  # DynamoDB reads the page when it is requested
        clock.now += latency
        limiter.settle(units, expected)
    biggest = max(units for _, units, _ in pages)
    for window in (1.0, 10.0):
        assert _max_window(sent, window) <= rate * window + biggest + 1e-6
    total = sum(units for _, units, _ in pages)
    # Never slower than needed: the run lasts at most the budget's time plus the pages' own latency.
    assert clock.now <= total / rate + sum(latency for *_, latency in pages) + 1e-6


def test_concurrent_segments_are_spaced_not_bursted():
    clock = FakeClock()
    limiter = ReadCapacityLimiter(10, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(4):  # four segments asking at the same instant (sleeps are per caller here)
        clock.now = 0.0
        limiter.acquire(5)
        starts.append(clock.now)
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_limiter_banks_no_idle_time():
    clock = FakeClock()
    limiter = ReadCapacityLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire(10)
    limiter.acquire(10)
    assert clock.now == pytest.approx(1.0)
    clock.now = 100.0  # a long stall (slow pages, pauses)
    limiter.acquire(10)
    limiter.acquire(10)
    assert clock.now == pytest.approx(101.0)  # no burst to "catch up" on the idle 99 s


def test_a_page_dearer_than_expected_delays_the_next_one():
    clock = FakeClock()
    limiter = ReadCapacityLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire(1)
    limiter.settle(20, 1)
    limiter.acquire(1)
    assert clock.now == pytest.approx(2.0)


def test_limiter_pause_delays_everyone():
    clock = FakeClock()
    limiter = ReadCapacityLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.pause(5)
    limiter.acquire(10)
    assert clock.now == pytest.approx(5.0)


def test_page_limit_keeps_pages_small_against_the_budget():
    assert page_limit_for(None, 4, 1.0) is None
    assert page_limit_for(10_000, 4, 0.125) is None  # 1 MB pages fit easily
    assert page_limit_for(40, 4, None) == 10  # unknown item size: start small
    assert page_limit_for(40, 4, 0.125) == 40  # 5 units per page of each of 4 segments = 0.5 s of budget
    assert page_limit_for(1, 8, 4.0) == 1


def test_read_rate_limit_from_the_table_description():
    provisioned = {"ProvisionedThroughput": {"ReadCapacityUnits": 200}}
    on_demand = {
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0},
    }
    assert read_rate_limit(provisioned, 0.5, None) == 100
    assert read_rate_limit(on_demand, 0.5, 75.0) == 75.0
    assert read_rate_limit(on_demand, 0.5, None) is None
