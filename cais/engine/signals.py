"""Signal names and numbers as docker accepts them: KILL, SIGKILL, 9."""

from __future__ import annotations

import signal

from cais.engine.errors import InvalidParameter


def parse(value: str | int | None, default: int = signal.SIGTERM) -> int:
    if value is None or value == "":
        return int(default)
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if not 0 < number < signal.SIGRTMAX + 1:
            raise InvalidParameter(f"Invalid signal: {value}")
        return number
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {value}") from None
