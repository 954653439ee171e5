"""CSV / JSONL file sources: typing, bad rows (line numbers and reasons), gzip, targets."""
from __future__ import annotations

import gzip
import json

import pytest

from streammoe.connectors import BadRow, open_source


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path


GOOD_CSV = "a, b ,y\n1,2,0\n\n  \n3,,1\n-4.5e1, 6 ,1\n"


def test_csv_typed_parsing_and_int_labels(tmp_path):
    src = open_source(write(tmp_path / "d.csv", GOOD_CSV))
    events = list(src)
    assert events == [
        ({"a": 1.0, "b": 2.0}, 0),
        ({"a": 3.0}, 1),  # empty cell: the feature is missing, not 0
        ({"a": -45.0, "b": 6.0}, 1),
    ]
    assert all(type(y) is int for _, y in events)
    assert (src.n, src.n_features, src.feature_names, src.classes) == (3, 2, ["a", "b"], [0, 1])
    assert src.errors == [] and src.name == "d.csv" and "3 events" in src.description
    assert src.drift_positions == [] and src.drift_width is None
    assert list(src) == events  # re-iterable


def test_csv_bad_rows_are_skipped_and_reported_with_line_and_column(tmp_path):
    text = (
        "x1,x2,label\n"        # 1
        "1,2,cat\n"            # 2 good
        "abc,2,dog\n"          # 3 text in x1
        "\n"                   # 4 blank
        "1,nan,dog\n"          # 5 NaN
        "1,-inf,dog\n"         # 6 inf
        "1,2\n"                # 7 too few fields
        "1,2,3,4\n"            # 8 too many
        "1,2,\n"               # 9 no label
        '"3\n4",5,cat\n'       # 10-11 quoted newline inside a numeric field
        "5,6,dog\n"            # 12 good
    )
    src = open_source(write(tmp_path / "d.csv", text))
    assert src.n == 2 and src.classes == ["cat", "dog"]  # not all ints: labels stay text
    assert list(src) == [({"x1": 1.0, "x2": 2.0}, "cat"), ({"x1": 5.0, "x2": 6.0}, "dog")]
    got = [(e.line, e.reason) for e in src.errors]
    assert got == [
        (3, "column 'x1': not a number: 'abc'"),
        (5, "column 'x2': non-finite value 'nan'"),
        (6, "column 'x2': non-finite value '-inf'"),
        (7, "expected 3 fields, got 2"),
        (8, "expected 3 fields, got 4"),
        (9, "missing target 'label'"),
        (10, "column 'x1': not a number: '3\\n4'"),
    ]
    assert all(isinstance(e, BadRow) for e in src.errors)
    assert src.errors[0].raw == "abc,2,dog"


def test_errors_are_per_iteration(tmp_path):
    src = open_source(write(tmp_path / "d.csv", "a,y\n1,0\nx,1\n2,1\n"))
    assert [e.line for e in src.errors] == [3]  # the first pass at open time
    it = iter(src)
    assert src.errors == []  # a fresh list as soon as a new iteration starts
    next(it)
    assert src.errors == []
    next(it)
    assert [e.line for e in src.errors] == [3]


def test_error_list_is_bounded_but_counts_everything(tmp_path, monkeypatch):
    from streammoe.connectors.base import ErrorLog

    monkeypatch.setattr(ErrorLog, "limit", 5)
    # "a" is declared numeric: its text is bad rows (undeclared, a mostly-text column is categorical)
    src = open_source(write(tmp_path / "d.csv", "a,y\n" + "bad,0\n" * 12 + "1,1\n"), feature_types={"a": "numeric"})
    assert list(src) == [({"a": 1.0}, 1)]
    assert len(src.errors) == 5 and src.errors.total == 12
    assert [e.line for e in src.errors] == [2, 3, 4, 5, 6]
    assert "12 bad rows skipped" in src.description


def test_unbalanced_quote_is_reported_not_swallowed_silently(tmp_path):
    src = open_source(write(tmp_path / "d.csv", 'a,y\n1,0\n"2,1\n3,1\n4,0\n'))
    assert list(src) == [({"a": 1.0}, 0)]
    (bad,) = src.errors
    assert bad.line == 3 and "unbalanced quote" in bad.reason and "4,0" in bad.raw


def test_invalid_utf8_and_oversized_field_are_bad_rows(tmp_path):
    data = b"a,y\n1,0\n\xff\xfe,1\n" + b"2," + b"z" * 200_000 + b"\n3,1\n"
    src = open_source(write(tmp_path / "d.csv", data))
    assert list(src) == [({"a": 1.0}, 0), ({"a": 3.0}, 1)]
    reasons = [(e.line, e.reason) for e in src.errors]
    assert reasons[0] == (3, "invalid UTF-8 bytes")
    assert reasons[1][0] == 4 and "field larger than field limit" in reasons[1][1]


@pytest.mark.parametrize(
    "header,target,expected",
    [
        ("a,class,b", None, "class"),
        ("a,Label,b", None, "Label"),
        ("y,target,b", None, "y"),
        ("a,b,c", None, "c"),  # no known name: the last column
        ("a,b,c", "a", "a"),
    ],
)
def test_csv_target_choice(tmp_path, header, target, expected):
    src = open_source(write(tmp_path / "d.csv", header + "\n1,2,3\n"), target=target)
    assert src.description.count(repr(expected)) == 1
    ((x, y),) = list(src)
    assert expected not in x and len(x) == 2
    assert y == header.split(",").index(expected) + 1  # the target cell's (int) value


def test_csv_header_problems_are_errors(tmp_path):
    cases = {
        "": "needs a header row",
        "\n\n": "needs a header row",
        "a,a,y\n1,2,3\n": "twice",
        "a,,y\n": "empty name",
        "y\n1\n": "at least one feature",
    }
    for i, (text, message) in enumerate(cases.items()):
        with pytest.raises(ValueError, match=message):
            open_source(write(tmp_path / f"d{i}.csv", text))
    with pytest.raises(ValueError, match="not in header"):
        open_source(write(tmp_path / "t.csv", "a,y\n1,2\n"), target="z")


def test_feature_types_categorical_and_ignore(tmp_path):
    text = "when,colour,size,y\n2024-01-01,red,1,a\n2024-01-02,blue,2,b\n2024-01-03,red,,a\n"
    path = write(tmp_path / "d.csv", text)
    # without types the date and colour columns are text columns: categorical
    plain = open_source(path)
    assert plain.n == 3 and not plain.errors
    assert list(plain)[0] == ({"when": "2024-01-01", "colour": "red", "size": 1.0}, "a")
    # declared numeric, text is a bad row, reported
    strict = open_source(path, feature_types={"when": "numeric"})
    assert strict.n == 0 and len(strict.errors) == 3 and "'when'" in strict.errors[0].reason
    src = open_source(path, feature_types={"when": "ignore", "size": "categorical"})
    assert list(src) == [
        ({"colour": "red", "size": "1"}, "a"),
        ({"colour": "blue", "size": "2"}, "b"),
        ({"colour": "red"}, "a"),
    ]
    assert src.feature_names == ["colour", "size"]
    assert list(src) == list(src)
    with pytest.raises(ValueError, match="unknown columns"):
        open_source(path, feature_types={"nope": "ignore"})
    with pytest.raises(ValueError, match="not one of"):
        open_source(path, feature_types={"size": "float"})
    with pytest.raises(ValueError, match="target"):
        open_source(path, feature_types={"y": "ignore"})


def test_n_truncates_but_keeps_the_file_order(tmp_path):
    rows = "".join(f"{i},{i % 3}\n" for i in range(100))
    src = open_source(write(tmp_path / "d.csv", "a,y\n" + rows), n=10)
    events = list(src)
    assert src.n == 10 and len(events) == 10 and events[-1] == ({"a": 9.0}, 0)


@pytest.mark.parametrize("name", ["d.csv.gz", "d.CSV"])
def test_gzip_and_case_insensitive_suffix(tmp_path, name):
    plain = list(open_source(write(tmp_path / "p.csv", GOOD_CSV)))
    assert list(open_source(write(tmp_path / name, GOOD_CSV))) == plain


def test_corrupt_gzip_fails_at_open(tmp_path):
    good = gzip.compress(("a,y\n" + "1,0\n" * 5000).encode())
    (tmp_path / "t.csv.gz").write_bytes(good[: len(good) // 2])  # truncated archive
    with pytest.raises(ValueError, match="cannot read"):
        open_source(tmp_path / "t.csv.gz")
    (tmp_path / "n.jsonl.gz").write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        open_source(tmp_path / "n.jsonl.gz")


def jsonl(*objects_or_lines) -> str:
    return "".join(
        (o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects_or_lines
    )


def test_jsonl_flat_rows_keep_label_types(tmp_path):
    text = jsonl({"a": 1, "b": 2.5, "y": "spam"}, "", {"a": None, "b": 0, "y": 3},
                 {"b": 1, "y": True})
    src = open_source(write(tmp_path / "d.jsonl", text))
    assert list(src) == [({"a": 1.0, "b": 2.5}, "spam"), ({"b": 0.0}, 3), ({"b": 1.0}, True)]
    assert src.feature_names == ["a", "b"] and src.n == 3 and src.errors == []
    assert src.classes == [True, 3, "spam"]  # mixed types: ordered by type name, then value


def test_jsonl_bad_rows(tmp_path):
    text = jsonl(
        {"a": 1, "y": 0},                    # 1 good
        "{not json",                         # 2
        "[1, 2]",                            # 3
        {"a": [1], "y": 0},                  # 4 nested feature
        {"a": {"b": 1}, "y": 0},             # 5 nested feature
        "",                                  # 6 blank
        '{"a": NaN, "y": 0}',                # 7 NaN (Python's json accepts the token)
        '{"a": Infinity, "y": 0}',           # 8
        {"a": "1.5", "y": 0},                # 9 text, not a number
        {"a": True, "y": 0},                 # 10 boolean
        {"a": 1},                            # 11 no target
        {"a": 1, "y": None},                 # 12 null target
        {"a": 1, "y": [0]},                  # 13 nested target
        {"a": 2, "y": 1},                    # 14 good
    )
    src = open_source(write(tmp_path / "d.ndjson", text))
    assert list(src) == [({"a": 1.0}, 0), ({"a": 1.0}, 0), ({"a": 2.0}, 1)]  # true is 1
    got = [(e.line, e.reason) for e in src.errors]
    assert [line for line, _ in got] == [2, 3, 4, 5, 7, 8, 9, 11, 12, 13]
    reasons = dict(got)
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "not a JSON object (got list)"
    assert reasons[4] == "column 'a': nested value [1]"
    assert reasons[7] == "column 'a': non-finite value 'nan'"
    assert reasons[8] == "column 'a': non-finite value 'inf'"
    assert reasons[9] == "column 'a': expected a number, got text '1.5'"
    assert reasons[11] == reasons[12] == "missing target 'y'"
    assert "nested" in reasons[13]
    assert src.errors[0].raw == "{not json"


def test_jsonl_service_event_form(tmp_path):
    """Dumps of the service's input topic replay directly: features under "x"."""
    text = jsonl(
        {"id": "e1", "x": {"f": 1, "g": 2}, "y": "a", "ts": 1.0},
        {"id": "e2", "x": {"f": 3}, "y": "b"},
        {"id": "e3", "x": 5, "y": "b"},
    )
    src = open_source(write(tmp_path / "d.jsonl.gz", text))
    assert list(src) == [({"f": 1.0, "g": 2.0}, "a"), ({"f": 3.0}, "b")]
    assert [(e.line, e.reason) for e in src.errors] == [(3, '"x" is not a JSON object of features')]


def test_jsonl_target_detection(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"a": 1, "Class": "u"}))
    assert list(open_source(path)) == [({"a": 1.0}, "u")]
    path = write(tmp_path / "e.jsonl", jsonl({"a": 1, "b": 2}))
    with pytest.raises(ValueError, match="no target key"):
        open_source(path)
    assert list(open_source(path, target="b")) == [({"a": 1.0}, 2)]
    with pytest.raises(ValueError, match="no JSON object"):
        open_source(write(tmp_path / "f.jsonl", "\n\n"))
    assert open_source(tmp_path / "f.jsonl", target="y").n == 0


def test_file_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(tmp_path / "missing.csv")
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="unsupported file type"):
        open_source(str(tmp_path / "data.parquet"))
    with pytest.raises(ValueError, match=r"led_a.*\.csv.*river:<Name>"):
        open_source("no-such-thing")
