"""json.loads and json.dumps through json's C half (_json) driven directly.

`import json` costs ~10 ms at every start of a command (json.decoder compiles regular
expressions at import, and re imports enum), where the work itself is done by _json's scanner
and encoder: the runtime's config.json and state.json, the `cais` CLI's requests and answers. The results are json's
(same defaults: strict strings, NaN and Infinity allowed, ASCII output); an input _json does not
take, or an error to report, goes to json itself, whose messages are the usual ones.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~10 ms at startup; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # an interpreter without json's C half: json does it all
    _json = None

_SPACE = " \t\n\r"  # JSON's whitespace


class _DecoderOptions:
    """What json.JSONDecoder hands the C scanner, with json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.lower().replace("infinity", "inf"))


def loads(text: str | bytes) -> Any:
    """json.loads of TEXT (bytes: UTF-8 without a BOM; anything else is left to json)."""
    if _json is not None and not (isinstance(text, bytes) and text.startswith(b"\xef\xbb\xbf")):
        try:
            s = text.decode() if isinstance(text, bytes) else text
        except UnicodeDecodeError:
            s = None
        if s is not None:
            start = len(s) - len(s.lstrip(_SPACE))
            try:
                value, end = _json.make_scanner(_DecoderOptions)(s, start)
            except (StopIteration, ValueError, SystemError):  # json says what is wrong, in its words
                pass  # (SystemError: _json raises its errors through json.decoder, not imported here)
            else:
                if not s[end:].strip(_SPACE):
                    return value
    import json

    return json.loads(text)


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, indent: int | None = None, separators: tuple[str, str] | None = None,
          sort_keys: bool = False, go: bool = False, escape_html: bool = False) -> str:
    """json.dumps(VALUE, indent=INDENT, separators=SEPARATORS, sort_keys=SORT_KEYS), ASCII output
    (`state` prints indented, as runc does; separators and sort_keys without indent only).

    GO: strings as Go's encoding/json writes them (what the docker CLI prints): UTF-8 kept,
    U+2028 and U+2029 escaped, and with ESCAPE_HTML (json.Marshal's default) `<`, `>`, `&` too."""
    if go:
        if _json is None:  # the rare interpreter without _json: json's text, then Go's escapes
            import json

            text = json.dumps(value, separators=separators, sort_keys=sort_keys, ensure_ascii=False)
            return _go_escapes(text, escape_html)
        encode = _json.make_encoder({}, _not_serializable, lambda s: _go_escapes(_json.encode_basestring(s), escape_html),
                                    None, *(separators or (", ", ": "))[::-1], sort_keys, False, True)
        return "".join(encode(value, 0))
    if _json is None or (indent is not None and (separators is not None or sort_keys)):
        import json

        return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys)
    if indent is not None:
        return _indented(value, indent, 0)
    item_separator, key_separator = separators or (", ", ": ")
    encode = _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None, key_separator,
                                item_separator, sort_keys, False, True)
    return "".join(encode(value, 0))


def _go_escapes(text: str, escape_html: bool) -> str:
    """Go's escapes on top of json's (non-ASCII) ones; `<`, `>` and `&` never occur outside strings."""
    if escape_html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _indented(value: Any, indent: int, level: int) -> str:
    """What json.dumps(indent=...) writes (the C encoder has no indentation)."""
    if not isinstance(value, (dict, list, tuple)) or not value:
        return dumps(value)
    inner = "\n" + " " * (indent * (level + 1))
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            import json  # keys json would convert: let it

            return json.dumps(value, indent=indent).replace("\n", "\n" + " " * (indent * level))
        items = [f"{_json.encode_basestring_ascii(k)}: {_indented(v, indent, level + 1)}" for k, v in value.items()]
        return "{" + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + "}"
    items = [_indented(v, indent, level + 1) for v in value]
    return "[" + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + "]"


def load(path: str) -> Any:
    with open(path, "rb") as f:
        return loads(f.read())
