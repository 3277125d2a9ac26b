"""Container ids and names: 64 hex digits, and docker-style generated names (adjective_scientist)."""

from __future__ import annotations

import re
import secrets

NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_LEFT = ["admiring", "agitated", "bold", "brave", "busy", "calm", "clever", "cool", "dazzling", "eager",
         "elastic", "festive", "gifted", "happy", "jolly", "keen", "lucid", "modest", "nifty", "quirky",
         "relaxed", "serene", "sharp", "tender", "vibrant", "wizardly", "zealous"]
_RIGHT = ["agnesi", "babbage", "bohr", "curie", "darwin", "euler", "fermi", "galois", "hopper", "hypatia",
          "johnson", "kepler", "lamarr", "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon",
          "thompson", "turing", "wozniak"]


def new_id() -> str:
    return secrets.token_hex(32)


def generate_name(taken: set[str]) -> str:
    for attempt in range(100):
        name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if attempt > 10:
            name += str(secrets.randbelow(100))
        if name not in taken:
            return name
    return "cais_" + secrets.token_hex(6)
