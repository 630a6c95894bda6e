"""The SP's SQLite store: atomic uploads, results tied to the version they came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc.errors import ProtocolError
from mpc.parties.store import Store


def test_upload_replaces_atomically_and_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    st = Store(db)
    assert st.put_record("u", "values", 0, 2, 3, b"abcdef", {"sum": (1, b"xyz")}) == 1
    assert st.put_record("u", "values", 0, 1, 3, b"ghi", {"sum": (1, b"zzz")}) == 2
    with pytest.raises(ProtocolError):  # blob does not match count x width: nothing stored
        st.put_record("u", "values", 0, 2, 3, b"abc")
    st.close()
    st = Store(db)
    rec = st.get_record("u", "values")
    assert rec is not None and (rec.version, rec.count, rec.blob) == (2, 1, b"ghi")
    res = st.get_result("u", "sum")
    assert res is not None and (res.version, res.blob) == (2, b"zzz")


def test_results_of_other_kinds_are_kept(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.put_record("u", "values", 0, 1, 1, b"a", {"sum": (1, b"s")})
    st.put_record("u", "ratings", 0, 1, 1, b"r")
    assert st.get_result("u", "sum") is not None
    st.put_record("u", "values", 0, 1, 1, b"b")  # new values, no result given: old sum dropped
    assert st.get_result("u", "sum") is None


def test_a_late_result_for_an_old_version_is_refused(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    v1 = st.put_record("u", "values", 0, 1, 1, b"a")
    v2 = st.put_record("u", "values", 0, 1, 1, b"b")
    assert not st.put_result("u", "rec", "values", v1, 1, 1, b"x")
    assert st.get_result("u", "rec") is None
    assert st.put_result("u", "rec", "values", v2, 1, 1, b"y")
    assert st.get_result("u", "rec").blob == b"y"
    assert not st.put_result("nobody", "rec", "values", 1, 1, 1, b"z")
