"""Messages of the command line: one line each, text or JSON (--log-format), to --log or stderr."""

from __future__ import annotations

import sys
import time


class Log:
    def __init__(self, path: str | None = None, fmt: str = "text") -> None:
        self.path = path
        self.fmt = fmt

    def _emit(self, level: str, message: str) -> None:
        message = " ".join(message.split("\n"))
        if self.fmt == "json":
            import json

            line = json.dumps({"level": level, "msg": message,
                               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        else:
            line = f"cais-runtime: {'' if level == 'error' else level + ': '}{message}"
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass
        if not self.path or level == "error":
            print(line if not self.path else f"cais-runtime: {message}", file=sys.stderr)

    def error(self, message: str) -> None:
        self._emit("error", message)

    def warning(self, message: str) -> None:
        self._emit("warning", message)
