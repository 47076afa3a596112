"""The disk spool: atomic 0600 files, oldest first, market data dropped first at the cap."""

from __future__ import annotations

import gzip
import logging
import os
import stat
from pathlib import Path

import pytest
from lpkit import numbered

from galfriday_recorder.config import RecorderConfig
from galfriday_recorder.spool import Spool, SpoolLocked, spool_status


def _incompressible(lines: int, tag: str) -> bytes:
    """Lines that gzip cannot shrink much, so file sizes are predictable."""
    return b"".join(
        b'x,k=%s v="%s" %d\n' % (tag.encode(), os.urandom(48).hex().encode(), i)
        for i in range(lines)
    )


def test_files_are_private_ordered_and_read_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    spool.open()
    first, second = numbered(10), numbered(5, start=10)
    assert spool.add(first, 10, market=True)
    assert spool.add(second, 5, market=False)
    names = sorted(p.name for p in (tmp_path / "spool").glob("*.lp.gz"))
    assert [n.split("-")[1:] for n in names] == [["m", "10.lp.gz"], ["o", "5.lp.gz"]]
    for name in names:
        mode = stat.S_IMODE((tmp_path / "spool" / name).stat().st_mode)
        assert mode == 0o600
        assert gzip.decompress((tmp_path / "spool" / name).read_bytes()) in (first, second)
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    item = spool.take_oldest()
    assert item is not None
    assert item[1] == first
    spool.done(item[0])
    item = spool.take_oldest()
    assert item is not None
    assert item[1] == second
    spool.release(item[0])
    spool.close()

    reopened = Spool(tmp_path / "spool", max_bytes=10_000_000)
    reopened.open()
    assert (reopened.files, reopened.lines) == (1, 5)
    reopened.close()


def test_cap_drops_oldest_market_data_first_and_counts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch = _incompressible(20, "a")
    size = len(gzip.compress(batch, compresslevel=1, mtime=0))
    spool = Spool(tmp_path, max_bytes=int(size * 4.5))
    spool.open()
    with caplog.at_level(logging.WARNING, logger="galfriday_recorder.spool"):
        assert spool.add(_incompressible(20, "o1"), 20, market=False)
        assert spool.add(_incompressible(20, "m1"), 20, market=True)
        assert spool.add(_incompressible(20, "m2"), 20, market=True)
        assert spool.add(_incompressible(20, "o2"), 20, market=False)
        assert spool.lines_dropped == 0
        # Full: a fifth batch pushes out the oldest market file, then the next one.
        assert spool.add(_incompressible(20, "o3"), 20, market=False)
        assert spool.add(_incompressible(20, "o4"), 20, market=False)
        kinds = [n.split("-")[1] for n in sorted(os.listdir(tmp_path)) if n.endswith(".gz")]
        assert kinds == ["o", "o", "o", "o"]
        assert spool.lines_dropped == 40
        # No market data left: a new market batch goes rather than older other data...
        assert not spool.add(_incompressible(20, "m3"), 20, market=True)
        # ...while other data pushes out the oldest other data.
        assert spool.add(_incompressible(20, "o5"), 20, market=False)
    assert spool.lines_dropped == 80
    assert spool.bytes <= spool.max_bytes
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.levelno for r in drops] == [logging.WARNING] * 4
    assert "dropped 20 market lines" in drops[0].getMessage()
    assert "dropped 20 non-market lines" in drops[-1].getMessage()
    first = spool.take_oldest()
    assert first is not None
    assert b"k=o2" in first[1]
    spool.close()


def test_a_spool_has_one_owner_and_a_status(tmp_path: Path) -> None:
    config = RecorderConfig(influx_url="http://127.0.0.1:1", data_dir=tmp_path)
    spool = Spool(config.spool_dir, config.spool_max_bytes)
    spool.open()
    spool.add(numbered(7), 7, market=True)
    spool.add(numbered(3), 3, market=False)
    with pytest.raises(SpoolLocked):
        Spool(config.spool_dir, config.spool_max_bytes).open()
    status = spool_status(config)
    assert status["files"] == 2
    assert status["lines"] == 10
    assert (status["market_files"], status["market_lines"]) == (1, 7)
    assert status["bytes"] == spool.bytes
    assert status["in_use"] is True
    spool.close()
    assert spool_status(config)["in_use"] is False


def test_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.open()
    spool.add(numbered(4), 4, market=False)
    spool.add(numbered(2), 2, market=False)
    oldest = sorted(tmp_path.glob("*.lp.gz"))[0]
    oldest.write_bytes(b"not gzip")
    item = spool.take_oldest()
    assert item is not None
    assert item[0].lines == 2
    assert spool.lines_dropped == 4
    assert oldest.with_name(oldest.name + ".corrupt").exists()
    spool.close()


def test_a_rewritten_file_keeps_its_place_and_a_crash_leaves_the_newer_version(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.open()
    assert spool.add(numbered(10), 10, market=False)
    assert spool.add(numbered(3, start=10), 3, market=True)
    item = spool.take_oldest()
    assert item is not None
    old = item[0]
    new = spool.rewrite(old, numbered(6, start=4))
    assert new.name.endswith("-o-6.lp.gz")
    assert new.name[:20] == old.name[:20]
    assert stat.S_IMODE((tmp_path / new.name).stat().st_mode) == 0o600
    assert (spool.files, spool.lines) == (2, 9)
    taken = spool.take_oldest()  # the rewritten one stays taken: the next one comes
    assert taken is not None
    assert taken[0].market
    spool.release(new)
    spool.close()
    # A crash between the rewrite's rename and the old file's unlink leaves both.
    (tmp_path / old.name).write_bytes(gzip.compress(numbered(10)))
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    reopened.open()
    assert not (tmp_path / old.name).exists()
    item = reopened.take_oldest()
    assert item is not None
    assert item[1] == numbered(6, start=4)
    reopened.close()
