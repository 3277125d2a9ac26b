"""The three ways of showing a build: plain lines, the compact TTY view, docker's JSON messages."""

from __future__ import annotations

import io

from cais.image.build.events import (
    BuildDone,
    BuildFailed,
    BuildWarning,
    PlainRenderer,
    StepCached,
    StepDone,
    StepOutput,
    StepStarted,
    TtyRenderer,
    docker_message,
)

IMAGE = "sha256:" + "ab" * 32
EVENTS = [StepStarted(1, 2, "FROM busybox"), StepDone(1, IMAGE), StepStarted(2, 2, "RUN echo hi"),
          StepOutput(2, b"h"), StepOutput(2, b"i\npartial"), StepDone(2, IMAGE),
          StepStarted(3, 3, "ENV A=1"), StepCached(3), StepDone(3, IMAGE), BuildWarning("careful"),
          BuildDone(IMAGE, ("app:1",))]


def test_plain_is_dockers_classic_output():
    out = io.StringIO()
    for e in EVENTS:
        PlainRenderer(out)(e)
    text = out.getvalue()
    assert text.startswith("Step 1/2 : FROM busybox\n ---> abababababab\nStep 2/2 : RUN echo hi\nhi\npartial")
    assert " ---> Using cache\n" in text and "[WARNING]: careful\n" in text
    assert text.endswith("Successfully built abababababab\nSuccessfully tagged app:1\n")


def test_quiet_prints_only_the_id():
    out = io.StringIO()
    render = PlainRenderer(out, quiet=True)
    for e in EVENTS:
        render(e)
    assert out.getvalue() == IMAGE + "\n"


def test_tty_view():
    out = io.StringIO()
    render = TtyRenderer(out)
    for e in EVENTS:
        render(e)
    text = out.getvalue()
    assert "=> [2/2] RUN echo hi" in text and "   hi\x1b[0m\n" in text and "   partial" in text
    assert "CACHED" in text and "DONE" in text and f"writing image {IMAGE}" in text


def test_docker_json_messages():
    assert docker_message(StepStarted(1, 2, "FROM busybox")) == {"stream": "Step 1/2 : FROM busybox\n"}
    assert docker_message(BuildDone(IMAGE)) == {"aux": {"ID": IMAGE}}
    assert docker_message(BuildFailed("Dockerfile:2: bad")) == {"errorDetail": {"message": "Dockerfile:2: bad"},
                                                                "error": "Dockerfile:2: bad"}
