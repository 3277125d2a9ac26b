"""Progress rendering: Docker's JSON message stream and the terminal renderer."""

from __future__ import annotations

import io
import json

from cais.registry.progress import CLIProgress, JSONProgress, ProgressEvent, human_size, progress_bar


def test_docker_progress_strings() -> None:
    assert human_size(2207000) == "2.207MB" and human_size(803800) == "803.8kB" and human_size(12) == "12B"
    bar = progress_bar(1103500, 2207000)
    assert bar.startswith("[" + "=" * 25 + ">" + " " * 25 + "]") and bar.endswith(" 1.103MB/2.207MB")


def test_json_stream() -> None:
    out: list[bytes] = []
    render = JSONProgress(out.append)
    render(ProgressEvent("latest", "Pulling from cais/x"))
    render(ProgressEvent("0123456789ab", "Downloading", 10, 100))
    render(ProgressEvent("0123456789ab", "Downloading", 20, 100))  # throttled
    render(ProgressEvent("0123456789ab", "Downloading", 100, 100))  # the last one always goes out
    render(ProgressEvent("0123456789ab", "Download complete"))
    render.error("boom")
    messages = [json.loads(line) for line in out]
    assert all(line.endswith(b"\r\n") for line in out)
    assert messages[0] == {"status": "Pulling from cais/x", "id": "latest"}
    assert messages[1]["progressDetail"] == {"current": 10, "total": 100} and messages[1]["id"] == "0123456789ab"
    assert [m.get("status") for m in messages] == ["Pulling from cais/x", "Downloading", "Downloading",
                                                   "Download complete", None]
    assert messages[-1] == {"errorDetail": {"message": "boom"}, "error": "boom"}


def test_plain_lines_without_a_tty() -> None:
    stream = io.StringIO()
    with CLIProgress(stream, tty=False) as render:
        render(ProgressEvent("abc", "Pulling fs layer"))
        for n in range(5):
            render(ProgressEvent("abc", "Downloading", n, 4))
        render(ProgressEvent("abc", "Download complete"))
        render(ProgressEvent("", "Digest: sha256:00"))
    assert stream.getvalue() == "abc: Pulling fs layer\nabc: Downloading\nabc: Download complete\nDigest: sha256:00\n"


def test_bars_on_a_tty() -> None:
    stream = io.StringIO()
    with CLIProgress(stream, tty=True) as render:
        render(ProgressEvent("abc", "Downloading", 512, 1024))
        render(ProgressEvent("abc", "Download complete"))
    text = stream.getvalue()
    assert "abc" in text and "Download complete" in text
