"""The carddav benchmark table at a tiny scale, so it cannot rot: ours and vdirsyncer against
Radicale and xandikos, and the request counts it reports checked."""

from __future__ import annotations

import pytest

from bench import carddav
from bench.world import World


def test_the_carddav_table_runs_ours_and_vdirsyncer_against_radicale_and_xandikos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a tiny scale (no AWS needed: the pass runs on an in-memory store)
    monkeypatch.setenv("BENCH_SCALE", "0.02")
    # When the carddav table runs
    table = carddav.run(World())
    # Then both listed the same book, a quiet pass was one request on either server, an edit
    # costs the same number of requests in the small book and the large one, and a look-up of
    # 1 or of 30 contacts was one query that found the one card sharing an email
    listing = table.figures["listing"]
    assert listing["contacts"] == 40 and listing["ours_s"] > 0 and listing["vdirsyncer_s"] > 0
    assert listing["ours_rss_mb"] > 0 and listing["vdirsyncer_rss_mb"] > 0
    for server in ("radicale", "xandikos"):
        quiet = table.figures["quiet"][server]
        assert quiet["requests"] == 1 and quiet["answer"] > 0 and quiet["vdirsyncer"] > 0
        assert [(u["requests"], u["found"]) for u in table.figures["look_ups"][server]] == [
            (1, 1),
            (1, 1),
        ]
    assert table.figures["edit"]["small"][1] == table.figures["edit"]["big"][1] == 2
    assert len(table.rows) == 8 and "vdirsyncer" in table.render()
