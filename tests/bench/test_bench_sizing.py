"""The memory-sizing guide: one row per memory size, from the one- and two-thread figures."""

from bench.sizing import sizing_guide


def test_guide_has_the_three_memory_sizes_and_flags_what_does_not_fit():
    rows = sizing_guide(one_thread_ms=60.0, two_threads_ms=35.0, peak_rss_mb=2000.0)
    assert [row["memory_mb"] for row in rows] == [1769, 3008, 5307]
    assert [row["fits_in_memory"] for row in rows] == [False, True, True]
    assert rows[0]["expected_p50_ms"] > rows[1]["expected_p50_ms"] > rows[2]["expected_p50_ms"]
