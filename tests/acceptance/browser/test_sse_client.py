"""The browser's SSE parser (static/sse.js), fed the awkward cases of the
text/event-stream format piece by piece, as a network delivers them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

PARSE = """async (pieces) => {
  const { SseParser } = await import("/static/sse.js");
  const events = [];
  const parser = new SseParser((event) => events.push(event));
  for (const piece of pieces) parser.push(piece);
  return events;
}"""


def parse(page, pieces: list[str]) -> list[dict]:
    return page.evaluate(PARSE, pieces)


def test_frames_split_anywhere_parse_the_same(page):
    page.goto("/profile")
    stream = 'retry: 2000\r\n\r\n: ping\r\n\r\nid: 7\r\ndata: {"type":"chunk"}\r\n\r\n'
    whole = parse(page, [stream])
    assert whole == [{"id": "7", "event": "message", "data": '{"type":"chunk"}', "retry": 2000}]
    # Every split point, including between a CR and its LF.
    for cut in range(1, len(stream)):
        assert parse(page, [stream[:cut], stream[cut:]]) == whole, cut


def test_multiline_data_ids_and_comments(page):
    page.goto("/profile")
    events = parse(
        page,
        [
            "data: first\ndata:second\n\n",  # two lines, the space after the colon optional
            ": a comment\nid: 3\n\n",  # an id with no data: remembered, no event
            "event: custom\ndata: x\n\n",
            "data: last\rdata: cr-only\r\r",  # bare CR line ends
            "data: never finished",
        ],
    )
    assert [(e["id"], e["event"], e["data"]) for e in events] == [
        (None, "message", "first\nsecond"),
        ("3", "custom", "x"),
        ("3", "message", "last\ncr-only"),
    ]
