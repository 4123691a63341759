"""Recipient input (``newsletter_queue.campaigns.recipients``): real files in tmp_path, exact row
numbers, duplicates, re-iteration, and hostile input that must give row errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from newsletter_queue.campaigns.recipients import (
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    RecipientCheck,
    RecipientsError,
    RowError,
    check_recipients,
    rows_from_csv,
    rows_from_iterable,
    rows_from_ndjson,
    valid_recipients,
)
from newsletter_queue.campaigns.spool import spool_recipients
from newsletter_queue.errors import JobValidationError
from newsletter_queue.jobs import Recipient


def write(tmp_path: Path, text: str | bytes, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows_of(check: RecipientCheck) -> list[int]:
    return [e.row for e in check.errors]


# --- CSV -------------------------------------------------------------------------------
def test_csv_columns_become_email_name_and_personalizations(tmp_path: Path) -> None:
    path = write(tmp_path, "Email,Name,plan,City\n"
                           "alice@Example.COM,Alice,pro,Paris\n"
                           " bob@example.com ,,free,\n")
    assert list(rows_from_csv(path)) == [
        (1, {"email": "alice@Example.COM", "name": "Alice",
             "personalizations": {"plan": "pro", "City": "Paris"}}),
        (2, {"email": "bob@example.com", "personalizations": {"plan": "free", "City": ""}}),
    ]
    wire = list(valid_recipients(rows_from_csv(path)))
    assert wire == [
        Recipient(email="alice@Example.COM", name="Alice",
                  personalizations={"plan": "pro", "City": "Paris"}).to_wire(),
        Recipient(email="bob@example.com",
                  personalizations={"plan": "free", "City": ""}).to_wire(),
    ]
    assert wire[0]["email"] == "alice@example.com"  # domain lower-cased by the model


def test_csv_email_only_has_no_personalizations(tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@example.com\n")
    assert list(rows_from_csv(path)) == [(1, {"email": "a@example.com"})]


def test_csv_bom_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfemail,name\r\n\r\na@example.com,A\r\n\r\n"
                           b"b@example.com,B\r\n,\r\n")
    assert [(n, r["email"]) for n, r in rows_from_csv(path)] == [
        (2, "a@example.com"), (4, "b@example.com")]  # blank lines counted, skipped
    check = check_recipients(rows_from_csv(path))
    assert (check.valid, check.duplicates, check.errors) == (2, 0, [])


def test_csv_row_errors_have_exact_numbers(tmp_path: Path) -> None:
    long_value = "x" * (MAX_FIELD_CHARS + 1)
    path = write(tmp_path, "email,name,plan\n"
                           "ok@example.com,Ok,pro\n"             # 1
                           "not-an-address,Bad,pro\n"            # 2
                           "short@example.com,Short\n"           # 3: two cells
                           f"long@example.com,{'n' * 300},pro\n"  # 4: name over 256
                           f"plan@example.com,P,{long_value}\n"  # 5: value over the cap
                           '"multi\nline@example.com",M,pro\n'   # 6 (spans two lines)
                           "last@example.com,L,pro,extra\n")     # 7: four cells
    check = check_recipients(rows_from_csv(path))
    assert check.valid == 1
    assert check.duplicates == 0
    assert not check.errors_truncated
    assert [(e.row, e.field) for e in check.errors] == [
        (2, "email"), (3, "(row)"), (4, "name"), (5, "plan"), (6, "email"), (7, "(row)")]
    assert check.errors[1].message == "2 cells; the header has 3 columns"
    assert check.errors[3].message == f"longer than {MAX_FIELD_CHARS} characters"
    assert [r["email"] for r in valid_recipients(rows_from_csv(path))] == ["ok@example.com"]


def test_csv_duplicates_collapse_case_insensitively_first_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name\n"
                           "a@example.com,First\n"
                           "A@EXAMPLE.com,Second\n"
                           "b@example.com,B\n"
                           "bad,Bad\n"
                           "a@example.com,Third\n")
    check = check_recipients(rows_from_csv(path))
    assert (check.valid, check.duplicates, rows_of(check)) == (2, 2, [4])
    assert [(r["email"], r["name"]) for r in valid_recipients(rows_from_csv(path))] == [
        ("a@example.com", "First"), ("b@example.com", "B")]


def test_path_sources_are_re_iterable(tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@example.com\nb@example.com\n")
    for rows in (rows_from_csv(path), rows_from_csv(str(path))):
        assert list(rows) == list(rows)
        assert len(list(rows)) == 2
        assert check_recipients(rows).valid == 2
        assert len(list(valid_recipients(rows))) == 2
    ndjson = rows_from_ndjson(write(tmp_path, '{"email": "a@example.com"}\n', "r.ndjson"))
    assert list(ndjson) == list(ndjson) == [(1, {"email": "a@example.com"})]


def test_open_handles_text_and_binary(tmp_path: Path) -> None:
    text = io.StringIO("\ufeffemail,name\na@example.com,A\n")
    assert list(rows_from_csv(text)) == [(1, {"email": "a@example.com", "name": "A"})]
    binary = io.BytesIO(b"email\nb@example.com\n")
    assert list(rows_from_csv(binary)) == [(1, {"email": "b@example.com"})]


def test_error_limit_truncates(tmp_path: Path) -> None:
    path = write(tmp_path, "email\n" + "".join(f"bad{i}\n" for i in range(10)))
    check = check_recipients(rows_from_csv(path), max_errors=3)
    assert rows_of(check) == [1, 2, 3]
    assert check.errors_truncated
    assert check.valid == 0
    with pytest.raises(RecipientsError) as caught:
        check.raise_for_errors()
    assert caught.value.truncated
    assert caught.value.rows == check.errors


# --- file-level problems ---------------------------------------------------------------
@pytest.mark.parametrize(("content", "expected"), [
    (b"", "the file is empty"),
    (b"\n\n  \n", "the file is empty"),
    (b"name,plan\nAlice,pro\n", "no 'email' column (it has: name, plan)"),
    (b"email,,plan\na@example.com,x,y\n", "column 2 of the header has no name"),
    (b"email,Plan,plan\n", "column 'plan' appears twice"),
    ("email,name\na@example.com,A\n".encode("utf-16"), "the file is UTF-16"),
    ("email,name\n".encode("utf-16-le"), "NUL characters"),
    (b"em\xe9ail,name\n", "not UTF-8: byte 0xe9 at byte offset 2"),
])
def test_unusable_files_raise_row_zero(tmp_path: Path, content: bytes, expected: str) -> None:
    rows = rows_from_csv(write(tmp_path, content))
    with pytest.raises(RecipientsError) as caught:
        check_recipients(rows)
    error = caught.value
    assert isinstance(error, JobValidationError)
    assert [r.row for r in error.rows] == [0]
    assert expected in str(error)


def test_text_handle_that_cannot_decode(tmp_path: Path) -> None:
    path = write(tmp_path, b"email\na@example.com\n" + b"b\xff@example.com\n" * 5000)
    with path.open(encoding="utf-8") as handle, pytest.raises(RecipientsError) as caught:
        list(rows_from_csv(handle))
    assert caught.value.rows[0].row == 0
    assert "cannot be decoded after line" in str(caught.value)
    assert "invalid start byte" in str(caught.value)


# --- hostile rows ----------------------------------------------------------------------
def test_nul_bytes_are_row_errors(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name,plan\n"
                           b"a\x00@example.com,A,p\n"
                           b"b@example.com,B\x00,p\n"
                           b"c@example.com,C,p\x00\n"
                           b"d@example.com,D,p\n")
    check = check_recipients(rows_from_csv(path))
    assert [(e.row, e.field) for e in check.errors] == [(1, "email"), (2, "name"), (3, "plan")]
    assert check.valid == 1


def test_huge_field_is_skipped_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as out:
        out.write(b"email,name\na@example.com,A\nb@example.com,")
        out.write(b"x" * (10 * 1024 * 1024))
        out.write(b"\nc@example.com,C\n")
    check = check_recipients(rows_from_csv(path))
    assert check.errors == [RowError(2, "(row)",
                                     f"line longer than {MAX_LINE_BYTES} bytes (skipped)")]
    assert check.valid == 2
    assert [r["email"] for r in valid_recipients(rows_from_csv(path))] == [
        "a@example.com", "c@example.com"]


def test_huge_quoted_field_over_many_lines(tmp_path: Path) -> None:
    lines = "\n".join(["y" * 1000] * 200)  # 200 KB inside quotes: past csv's field limit
    for closing in ('"', "y" * 1000 + '",and ""quotes"" after'):  # the field's last line
        path = write(tmp_path, f'email,name\na@example.com,"{lines}\n{closing}\n'
                               'b@example.com,"B ""the"" second"\nc@example.com,C\n')
        check = check_recipients(rows_from_csv(path))
        # one error for the whole field: its remaining lines are not read as rows
        assert check.errors == [RowError(1, "(row)", "cannot be read as CSV: field larger "
                                         f"than field limit ({csv.field_size_limit()})")]
        assert [r["email"] for r in valid_recipients(rows_from_csv(path))] == [
            "b@example.com", "c@example.com"]


def test_bad_bytes_name_row_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\na@example.com,A\nb@example.com,Ren\xe9\nc@example.com,C\n")
    check = check_recipients(rows_from_csv(path))
    offset = len(b"email,name\na@example.com,A\nb@example.com,Ren")
    assert check.errors == [RowError(2, "(row)", f"not UTF-8: byte 0xe9 at byte offset "
                                                 f"{offset} of the file; save the file as UTF-8")]
    assert check.valid == 2


def test_bad_bytes_offset_counts_the_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfemail\n\xff@example.com\n")
    check = check_recipients(rows_from_csv(path))
    assert "at byte offset 9 of the file" in check.errors[0].message


# --- NDJSON ----------------------------------------------------------------------------
def test_ndjson_lines_numbered_from_one(tmp_path: Path) -> None:
    path = write(tmp_path, '{"email": "a@example.com", "name": "A", '
                           '"personalizations": {"plan": "pro", "n": 3}}\n'
                           "\n"
                           "[1, 2]\n"
                           "{not json\n"
                           '{"email": "bad"}\n'
                           '{"email": "b@example.com", "colour": "red"}\n'
                           '{"email": "A@example.com"}\n'
                           + "[" * 5000 + "]" * 5000 + "\n"
                           '{"email": "c@example.com", "personalizations": {"x": "'
                           + "z" * (MAX_FIELD_CHARS + 1) + '"}}\n', "r.ndjson")
    check = check_recipients(rows_from_ndjson(path))
    assert [(e.row, e.field) for e in check.errors] == [
        (3, "(row)"), (4, "(row)"), (5, "email"), (6, "colour"), (8, "(row)"), (9, "x")]
    assert check.errors[0].message == "not a JSON object but list"
    assert check.errors[1].message.startswith("not JSON: ")
    assert (check.valid, check.duplicates) == (1, 1)
    assert list(valid_recipients(rows_from_ndjson(path))) == [
        {"email": "a@example.com", "name": "A", "personalizations": {"plan": "pro", "n": 3}}]


def test_ndjson_bad_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"email": "a@example.com"}\n{"email": "\xc3(@x.com"}\n',
                 "r.ndjson")
    check = check_recipients(rows_from_ndjson(path))
    assert [(e.row, e.field) for e in check.errors] == [(2, "(row)")]
    assert "byte offset 38" in check.errors[0].message


# --- Python objects --------------------------------------------------------------------
def test_iterable_rows_are_materialised_and_numbered_from_one() -> None:
    def items() -> object:
        yield Recipient(email="a@example.com", name="A")
        yield {"email": "B@example.com", "personalizations": {"k": 1}}
        yield {"email": "a@EXAMPLE.com"}
        yield "not a mapping"
        yield {"email": "c@example.com", "nmae": "typo"}

    rows = rows_from_iterable(items())  # type: ignore[arg-type]
    assert [n for n, _ in rows] == [1, 2, 3, 4, 5]
    assert list(rows) == list(rows)
    check = check_recipients(rows)
    assert (check.valid, check.duplicates) == (2, 1)
    assert [(e.row, e.field) for e in check.errors] == [(4, "(row)"), (5, "nmae")]
    assert [r["email"] for r in valid_recipients(rows)] == ["a@example.com", "B@example.com"]


# --- the error -------------------------------------------------------------------------
def test_recipients_error_names_the_first_rows() -> None:
    rows = [RowError(n, "email", "not a valid email address") for n in range(1, 9)]
    error = RecipientsError(rows, truncated=True)
    message = str(error)
    assert message.startswith("invalid recipients: row 1, email: not a valid email address; "
                              "row 2, email:")
    assert "row 5, email" in message
    assert "row 6" not in message
    assert message.endswith("; and 3 more (more not listed)")
    assert error.paths[:2] == ["row 1.email", "row 2.email"]
    assert len(error.errors) == 8
    whole = RecipientsError([RowError(3, "(row)", "2 cells; the header has 3 columns")])
    assert str(whole) == "invalid recipients: row 3: 2 cells; the header has 3 columns"
    assert whole.paths == ["row 3"]
    assert not whole.truncated


def test_many_rows_stream_without_a_list(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    with path.open("w") as out:
        out.write("email,name\n")
        for i in range(20_000):
            out.write(f"user{i % 19_000}@example.com,U{i}\n")
    rows = rows_from_csv(path)
    check = check_recipients(rows)
    assert (check.valid, check.duplicates, check.errors) == (19_000, 1_000, [])
    assert sum(1 for _ in valid_recipients(rows)) == 19_000
    assert json.dumps(next(iter(valid_recipients(rows))))  # wire dicts are JSON-ready


def test_spooling_checks_and_keeps_the_good_rows_in_one_pass(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name,plan\na@example.com,A,pro\nbad,B,x\n"
                           "A@EXAMPLE.COM,Again,free\nb@example.com,Bé \u2603,\n")
    expected = check_recipients(rows_from_csv(path))
    with path.open("rb") as handle, spool_recipients(rows_from_csv(handle)) as spooled:
        assert spooled.check == expected
        assert (spooled.check.valid, spooled.check.duplicates, rows_of(spooled.check)) == (
            2, 1, [2])
        assert list(spooled) == list(valid_recipients(rows_from_csv(path))) == [
            {"email": "a@example.com", "name": "A", "personalizations": {"plan": "pro"}},
            {"email": "b@example.com", "name": "Bé \u2603", "personalizations": {"plan": ""}}]
        assert list(spooled) == list(spooled)  # each pass reads the spool from its start


def test_a_large_spool_moves_to_a_file_and_reads_back_the_same(tmp_path: Path) -> None:
    rows = [(i, {"email": f"u{i}@example.com", "name": f"U {i}",
                 "personalizations": {"note": f"line\nbreak {i}"}}) for i in range(1, 2001)]
    with spool_recipients(iter(rows), memory_bytes=4096) as spooled:
        assert spooled._spool._rolled  # type: ignore[attr-defined]
        assert spooled.check.valid == 2000
        assert list(spooled) == [dict(row) for _, row in rows]
        batches = list(spooled.batches(300))
        assert [len(b) for b in batches] == [300] * 6 + [200]
        assert [w for b in batches for w in b] == [dict(row) for _, row in rows]
    small = spool_recipients(iter(rows[:3]))
    assert not small._spool._rolled  # type: ignore[attr-defined]
    small.close()


def test_spooling_an_unusable_file_raises_row_zero(tmp_path: Path) -> None:
    with pytest.raises(RecipientsError) as caught:
        spool_recipients(rows_from_csv(write(tmp_path, "name\nAnn\n")))
    assert [(r.row, r.field) for r in caught.value.rows] == [(0, "email")]
