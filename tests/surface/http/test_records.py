"""The transcript as a thread (``_records.thread_page``): what the session page shows."""

from __future__ import annotations

import json
from typing import Any

from fencepost.core import message, parse_transcript
from fencepost.surface.http._records import thread_page

HEADER = {"type": "session", "version": 3, "id": "s", "timestamp": "2026-03-29T07:00:00Z"}


def transcript(*records: tuple[str | None, str | None]) -> Any:
    """(id, parentId) pairs as a transcript; a record's text is its id."""
    lines = [HEADER]
    for rid, parent in records:
        entry: dict[str, Any] = {**message("user", rid or "no id"), "parentId": parent}
        if rid is not None:
            entry["id"] = rid
        lines.append(entry)
    return parse_transcript("".join(json.dumps(x) + "\n" for x in lines).encode())


def shape(page: dict[str, Any]) -> list[Any]:
    """main items as their index; a branch as (anchor, total, [indexes])."""
    out: list[Any] = []
    for item in page["items"]:
        if item["kind"] == "main":
            out.append(item["record"]["index"])
        else:
            out.append((item["anchor_index"], item["total"], [r["index"] for r in item["records"]]))
    return out


# Invariant HTTP-I11
def test_the_active_path_is_flat_and_each_side_branch_is_one_item_at_its_first_record():
    t = transcript(
        ("a0000000", None),
        ("a0000001", "a0000000"),
        ("b0000000", "a0000001"),  # a side branch off a0000001 ...
        ("b0000001", "b0000000"),
        ("c0000000", "b0000000"),  # ... with a fork of its own: still the same branch
        ("a0000002", "a0000001"),  # the path goes on from the fork point
        (None, None),  # a record without an id: not in the tree, shown where it is
        ("a0000003", "a0000002"),
    )
    page = thread_page(t, 0, 100)
    assert shape(page) == [0, 1, (1, 3, [2, 3, 4]), 5, 6, 7]
    assert page["leaf"] == "a0000003" and page["total"] == 8
    main = [i["record"] for i in page["items"] if i["kind"] == "main"]
    assert [r["active"] for r in main] == [True, True, True, False, True]
    assert all(r["follows"] for r in main)  # each path record follows the one shown above it
    branch = page["items"][2]
    assert [r["follows"] for r in branch["records"]] == [True, True, False]
    assert branch["records"][2]["parent_index"] == 2  # shown as "↳ #2"
    assert branch["open"] is False
    assert thread_page(t, 0, 100, open_branch="b0000000")["items"][2]["open"] is True


# Invariant HTTP-I11
def test_a_page_shows_the_records_of_its_range_and_a_branch_counts_its_records_in_all():
    t = transcript(
        ("a0000000", None),
        ("b0000000", "a0000000"),
        ("b0000001", "b0000000"),
        ("b0000002", "b0000001"),
        ("a0000001", "a0000000"),
    )
    assert shape(thread_page(t, 0, 2)) == [0, (0, 3, [1])]
    assert shape(thread_page(t, 2, 2)) == [(0, 3, [2, 3])]
    assert shape(thread_page(t, 4, 2)) == [4]
    assert shape(thread_page(t, 9, 2)) == []


# Invariant HTTP-I11
def test_roots_off_the_path_cycles_and_dangling_parents_are_branches_not_errors():
    t = transcript(
        ("d0000000", None),  # an old root the path does not reach
        ("e0000000", "ffffffff"),  # a parent that is not in the file
        ("a0000000", None),
        ("a0000001", "a0000000"),
    )
    assert shape(thread_page(t, 0, 10)) == [(None, 1, [0]), (None, 1, [1]), 2, 3]
