"""Progress of long loops: plain lines on the ``hybridformer.recipes`` logger when stderr is not a
terminal (pytest captures it), with counts, percentages and an ETA; a short loop stays quiet."""

from __future__ import annotations

import logging

from hybridformer.recipes.progress import track


def test_piped_progress_is_plain_lines_and_short_loops_are_quiet(caplog):
    with caplog.at_level(logging.INFO, logger="hybridformer.recipes"):
        assert list(track(iter("abcd"), 4, "scoring", every=0.0)) == list("abcd")
        assert list(track(iter("abcd"), 4, "quiet", every=3600.0)) == list("abcd")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" |")[0] for line in lines] == [
        "scoring: 1/4 batches (25%)", "scoring: 2/4 batches (50%)", "scoring: 3/4 batches (75%)",
        "scoring: 4/4 batches (100%)"]
    assert all("elapsed 0:00:0" in line and "ETA 0:00:0" in line for line in lines)
