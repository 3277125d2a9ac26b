"""Events (container, image, volume, network) in docker's shape, with filters and since/until.

The last 1024 events are kept in memory for `since`; subscribers get new ones through a queue.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time

from cais.engine.errors import InvalidParameter

HISTORY = 1024
FILTER_KEYS = {"container", "event", "image", "label", "type", "volume", "network", "daemon", "scope"}


class Subscription:
    def __init__(self, bus: EventBus, filters: dict[str, list[str]]) -> None:
        self.bus = bus
        self.filters = filters
        self.queue: queue.Queue[dict] = queue.Queue(maxsize=10000)

    def get(self, timeout: float) -> dict | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.bus.unsubscribe(self)


def validate_filters(filters: dict[str, list[str]]) -> None:
    for key in filters:
        if key not in FILTER_KEYS:
            raise InvalidParameter(f"invalid filter '{key}'")


def matches(event: dict, filters: dict[str, list[str]]) -> bool:
    actor = event.get("Actor", {})
    attrs = actor.get("Attributes", {})
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"] not in values and event["Action"].split(":")[0] not in values:
            return False
        if key in ("container", "volume", "network") and (
                event["Type"] != key or not any(v in (actor.get("ID"), attrs.get("name"))
                                                or actor.get("ID", "").startswith(v) for v in values)):
            return False
        if key == "image" and not any(v in (attrs.get("image"), actor.get("ID"), attrs.get("name")) for v in values):
            return False
        if key == "label":
            for v in values:
                k, sep, want = v.partition("=")
                if k not in attrs or (sep and attrs[k] != want):
                    return False
    return True


class EventBus:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: collections.deque[dict] = collections.deque(maxlen=HISTORY)
        self.subscribers: list[Subscription] = []

    def emit(self, kind: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        now = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        event = {"Type": kind, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                 "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
        if kind == "container":  # the pre-1.22 fields docker still sends
            event.update({"status": action, "id": actor_id, "from": attrs.get("image", "")})
        with self.lock:
            self.history.append(event)
            subscribers = list(self.subscribers)
        for sub in subscribers:
            if matches(event, sub.filters):
                with contextlib.suppress(queue.Full):
                    sub.queue.put_nowait(event)
        return event

    def subscribe(self, filters: dict[str, list[str]], since: float | None = None,
                  until: float | None = None) -> tuple[list[dict], Subscription]:
        """Past events in [since, until] and a subscription to new ones (atomically)."""
        validate_filters(filters)
        sub = Subscription(self, filters)
        with self.lock:
            past = []
            if since is not None:
                past = [e for e in self.history if e["timeNano"] / 1e9 >= since
                        and (until is None or e["timeNano"] / 1e9 <= until) and matches(e, filters)]
            self.subscribers.append(sub)
        return past, sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)
