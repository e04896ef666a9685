"""benchmarks/compare_results.py: a rerun's cell is "same" only if every field but `code` is equal."""

import json

import pytest

from benchmarks import compare_results
from benchmarks.compare_results import compare, differences


def write(folder, rel, doc, txt="table\n"):
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.with_suffix(".txt").write_text(txt)


def test_only_the_code_record_may_differ(tmp_path):
    doc = {"code": {"git_commit": "a"}, "systems": {"basic": {"jct_s": 1.5, "ttft_s": {"p50": 0.1}}}}
    write(tmp_path / "old", "offline/m_c/cell-1.json", doc)
    write(tmp_path / "new", "offline/m_c/cell-1.json", {**doc, "code": {"git_commit": "b"}})
    [row] = compare(tmp_path / "new", tmp_path / "old")
    assert row["differences"] == 0 and row["txt_identical"]
    moved = {**doc, "systems": {"basic": {"jct_s": 1.5000000000000002, "ttft_s": {"p50": 0.1}}}}
    write(tmp_path / "new", "offline/m_c/cell-1.json", moved, txt="other\n")
    [row] = compare(tmp_path / "new", tmp_path / "old")
    assert row["differences"] == 1
    assert row["first"] == [".systems.basic.jct_s: 1.5000000000000002 vs 1.5"]  # rerun vs committed
    assert not row["txt_identical"]


def test_types_lengths_and_keys_count_as_differences():
    assert differences(1, 1.0) == [": 1 vs 1.0"]
    assert differences([1, 2], [1]) == [": 2 vs 1 items"]
    assert differences({"a": 1}, {"b": 1}) == [": keys ['a', 'b']"]


def test_a_missing_or_unrelated_folder_exits_2(tmp_path, monkeypatch, capsys):
    for argv in ([str(tmp_path / "nope")], [str(tmp_path)]):
        monkeypatch.setattr("sys.argv", ["compare_results", *argv])
        with pytest.raises(SystemExit) as e:
            compare_results.main()
        assert e.value.code == 2
        assert str(tmp_path) in capsys.readouterr().err
