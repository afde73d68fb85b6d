"""What both HTTP/2 sides of the proxy share: the queue between them, and hyperframe's cheaper repr."""

from __future__ import annotations

import binascii

import hyperframe.frame
import pytest

from flyte_iap.local_proxy._h2peer import Queue


def _queue(*items: tuple[object, ...]) -> Queue:
    queue = Queue()
    for item in items:
        queue.put(*item)
    return queue


def test_whole_body_takes_a_complete_body_and_its_flow_controlled_length() -> None:
    queue = _queue(("data", b"ab", 3), ("data", b"cd", 2), ("end",))
    assert queue.whole_body(4) == (b"abcd", 5)
    assert not queue.ready


def test_whole_body_of_a_request_ended_without_data_is_empty() -> None:
    queue = _queue(("end",))
    assert queue.whole_body(0) == (b"", 0)


@pytest.mark.parametrize(
    ("items", "limit"),
    [
        ([("data", b"ab", 2)], 100),  # more may come
        ([], 100),  # nothing yet
        ([("data", b"ab", 2), ("trailers", []), ("end",)], 100),  # trailers go as their own frame
        ([("data", b"abc", 3), ("end",)], 2),  # larger than the window allows at once
    ],
)
def test_whole_body_leaves_the_queue_untouched_unless_it_can_take_it_all(
    items: list[tuple[object, ...]], limit: int
) -> None:
    queue = _queue(*items)
    assert queue.whole_body(limit) is None
    assert [item for item in queue._items] == items


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 12, 100, 16384, 1 << 20])
def test_frame_repr_text_is_what_hyperframe_gives_for_every_payload_size(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    hexed = binascii.hexlify(data).decode()
    expected = "None" if not data else "<hex:" + (hexed[:20] + "..." if len(hexed) > 20 else hexed) + ">"
    assert hyperframe.frame._raw_data_repr(data) == expected
    assert hyperframe.frame._raw_data_repr(memoryview(data)) == expected
    assert repr(hyperframe.frame.DataFrame(1, data=data)).endswith(": " + expected)


def test_frame_repr_no_longer_encodes_the_whole_payload() -> None:
    assert getattr(hyperframe.frame._raw_data_repr, "prefix_only", False)
