"""Go's text/template, the part docker users write, parsed and executed as Go does it.

Actions with pipelines (`|`), variables (`$`, `$x := …`, `$x = …`, `$k, $v := range …`),
`if`/`else if`/`else`, `range` (lists, maps in sorted key order, integers; `break`, `continue`),
`with`/`else with`, parenthesised pipelines, literals, trim markers (`{{-`, `-}}`), comments, Go's
builtins (and or not len index slice eq ne lt le gt ge print printf println) and the docker CLI's
(templates.go: json split join title lower upper pad truncate). Errors read as Go's:
`template: :1: unexpected EOF` when parsing, `template: :1:2: executing "" at <.X>: …` when running.

What a value is in Go is read from its Python shape: a format.Context is a struct (missing fields
are errors), a GoMap a Go map (missing keys are `<no value>`), any other dict the map the docker
CLI falls back to (missing keys are errors), None a nil.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class ParseError(Exception):
    """`template: :LINE: MESSAGE`."""


class ExecError(Exception):
    """An error while executing: where (POS, the node as written) and what."""

    def __init__(self, pos: int, node: str, message: str) -> None:
        super().__init__(message)
        self.pos, self.node, self.message = pos, node, message


class GoMap(dict):
    """A dict that is a Go map: a missing key is no value, not an error."""


class NilMap(GoMap):
    """A nil map: prints `map[]`, json null."""


class NilList(list):
    """A nil slice: prints `[]`, json null."""


class _Nil:
    """A nil pointer of a struct's field: prints `<nil>`, false."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<nil>"


NIL = _Nil()


class _Missing:
    """The invalid reflect.Value of a missing map key: prints `<no value>`."""

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


# ---- lexer ---------------------------------------------------------------------------------------
_KEYWORDS = frozenset(("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"))
_SPACE = " \t\r\n"


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


class _Token:
    __slots__ = ("kind", "value", "pos", "spaced")

    def __init__(self, kind: str, value: str, pos: int, spaced: bool = False) -> None:
        self.kind, self.value, self.pos, self.spaced = kind, value, pos, spaced


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _lex(text: str) -> list[_Token]:
    """Go's lexer: text, then each action's tokens between `left` and `right`."""
    tokens: list[_Token] = []
    pos = 0
    n = len(text)

    def fail(message: str, at: int) -> ParseError:
        return ParseError(f"template: :{_line(text, at)}: {message}")

    while pos < n:
        start = text.find("{{", pos)
        if start < 0:
            tokens.append(_Token("text", text[pos:], pos))
            break
        body = text[pos:start]
        inner = start + 2
        if text.startswith("-", inner) and inner + 1 < n and text[inner + 1] in _SPACE:
            body = body.rstrip(_SPACE)
            inner += 2
        if body:
            tokens.append(_Token("text", body, pos))
        i = inner
        if text.startswith("/*", i):  # right after the delimiter (and trim marker), as Go  # a comment: `*/` then the delimiter right away
            end = text.find("*/", i + 2)
            if end < 0:
                raise fail("unclosed comment", start)
            j = end + 2
            trim = False
            k = j
            while k < n and text[k] in _SPACE:
                k += 1
            if text.startswith("-}}", k) and k > j:
                trim, j = True, k + 1
            elif text.startswith("}}", j):
                pass
            else:
                raise fail("comment ends before closing delimiter", start)
            pos = j + 2
            if trim:
                while pos < n and text[pos] in _SPACE:
                    pos += 1
            continue
        tokens.append(_Token("left", "{{", start))
        i = inner
        spaced = True
        depth = 0
        while True:
            if i >= n:
                raise fail("unclosed action", start)
            c = text[i]
            if c in _SPACE:
                j = i
                while j < n and text[j] in _SPACE:
                    j += 1
                if text.startswith("-}}", j):
                    if depth:
                        raise fail("unclosed left paren", i)
                    tokens.append(_Token("right", "}}", j))
                    pos = j + 3
                    while pos < n and text[pos] in _SPACE:
                        pos += 1
                    break
                i, spaced = j, True
                continue
            if text.startswith("}}", i):
                if depth:
                    raise fail("unclosed left paren", i)
                tokens.append(_Token("right", "}}", i))
                pos = i + 2
                break
            start_tok = i
            if c == '"' or c == "`" or c == "'":
                end = _quoted_end(text, i)
                if end < 0:
                    raise fail({"'": "unterminated character constant", "`": "unterminated raw quoted string"}
                               .get(c, "unterminated quoted string"), i)
                kind = "char" if c == "'" else "string"
                tokens.append(_Token(kind, text[i:end], i, spaced))
                i = end
            elif c == ".":
                if i + 1 < n and "0" <= text[i + 1] <= "9":
                    i = _number_end(text, i)
                    tokens.append(_Token("number", text[start_tok:i], start_tok, spaced))
                else:
                    i += 1
                    while i < n and _is_alnum(text[i]):
                        i += 1
                    tokens.append(_Token("field" if i > start_tok + 1 else "dot", text[start_tok:i], start_tok, spaced))
            elif c == "$":
                i += 1
                while i < n and _is_alnum(text[i]):
                    i += 1
                tokens.append(_Token("var", text[start_tok:i], start_tok, spaced))
            elif c == ":":
                if not text.startswith(":=", i):
                    raise fail("expected :=", i)
                tokens.append(_Token("declare", ":=", i, spaced))
                i += 2
            elif c in "|=,":
                tokens.append(_Token({"|": "pipe", "=": "assign", ",": "comma"}[c], c, i, spaced))
                i += 1
            elif c == "(":
                depth += 1
                tokens.append(_Token("lparen", c, i, spaced))
                i += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise fail("unexpected right paren", i)
                tokens.append(_Token("rparen", c, i, spaced))
                i += 1
            elif "0" <= c <= "9" or c in "+-" and i + 1 < n and ("0" <= text[i + 1] <= "9" or text[i + 1] == "."):
                i = _number_end(text, i)
                tokens.append(_Token("number", text[start_tok:i], start_tok, spaced))
            elif _is_alnum(c):
                while i < n and _is_alnum(text[i]):
                    i += 1
                word = text[start_tok:i]
                kind = ("bool" if word in ("true", "false") else "nil" if word == "nil"
                        else "keyword" if word in _KEYWORDS else "ident")
                tokens.append(_Token(kind, word, start_tok, spaced))
            else:
                if " " < c < "\x7f":  # Go's itemChar: the parser finds it unexpected
                    tokens.append(_Token("char_item", c, i, spaced))
                    i += 1
                else:
                    shown = f" '{c}'" if c.isprintable() else ""
                    raise fail(f"unrecognized character in action: U+{ord(c):04X}{shown}", i)
            if tokens[-1].kind in ("field", "var", "ident", "bool", "nil", "keyword") and i < n \
                    and text[i] not in _SPACE + ".,|:()" and not text.startswith("}}", i):
                c = text[i]
                shown = f" '{c}'" if c.isprintable() else ""
                raise fail(f"bad character U+{ord(c):04X}{shown}", i)
            spaced = False
    tokens.append(_Token("eof", "", n))
    return tokens


def _quoted_end(text: str, i: int) -> int:
    quote = text[i]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and quote != "`":
            j += 2
            continue
        if c == "\n" and quote != "`":
            return -1
        if c == quote:
            return j + 1
        j += 1
    return -1


def _number_end(text: str, i: int) -> int:
    if text[i] in "+-":
        i += 1
    while i < len(text) and (_is_alnum(text[i]) or text[i] == "." or text[i] in "+-" and text[i - 1] in "eEpP"):
        i += 1
    return i


def _unquote(token: str) -> str:
    if token[0] == "`":
        return token[1:-1]
    out = []
    body = token[1:-1]
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
                  "f": "\f", "v": "\v"}
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            i += 2 + width
        elif e in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{e}")
    return "".join(out)


def _number(token: str) -> int | float:
    clean = token.replace("_", "")
    try:
        return int(clean, 0)
    except ValueError:
        return float(clean)


# ---- parser --------------------------------------------------------------------------------------
class Node:
    """A parsed piece: KIND, where it starts, its TEXT as Go prints it in errors, and its parts
    (a pipeline: commands, declared variables, assignment; if/range/with: pipeline, body, else)."""

    __slots__ = ("kind", "pos", "text", "a", "b", "c")

    def __init__(self, kind: str, pos: int, text: str = "", a: object = None, b: object = None,
                 c: object = None) -> None:
        self.kind, self.pos, self.text, self.a, self.b, self.c = kind, pos, text, a, b, c


class _Parser:
    def __init__(self, text: str, funcs: frozenset[str]) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0

    def fail(self, message: str, token: _Token | None = None) -> ParseError:
        token = token or self.tokens[min(self.i, len(self.tokens) - 1)]
        return ParseError(f"template: :{_line(self.text, token.pos)}: {message}")

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> list[Node]:
        nodes, stop = self.items()
        if stop is not None:
            raise self.fail(f"unexpected {{{{{stop.value}}}}}", stop)
        return nodes

    def items(self) -> tuple[list[Node], _Token | None]:
        """Nodes up to the end of the text or an `{{end}}`/`{{else}}` (returned, its `}}` not read)."""
        nodes: list[Node] = []
        while True:
            token = self.next()
            if token.kind == "eof":
                return nodes, None
            if token.kind == "text":
                nodes.append(Node("text", token.pos, token.value))
                continue
            word = self.peek()
            if word.kind == "keyword":
                self.next()
                if word.value in ("end", "else"):
                    return nodes, word
                nodes.append(self.control(word))
            else:
                pipe = self.pipeline("command", word)
                nodes.append(Node("action", word.pos, pipe.text, pipe))

    def expect_right(self, context: str) -> None:
        token = self.next()
        if token.kind != "right":
            raise self.fail(f"unexpected {_describe(token)} in {context}", token)

    def control(self, word: _Token) -> Node:
        name = word.value
        if name in ("break", "continue"):
            if not self.range_depth:
                raise self.fail(f"{{{{{name}}}}} outside {{{{range}}}}", word)
            self.expect_right(name)
            return Node(name, word.pos)
        if name not in ("if", "range", "with"):
            raise self.fail(f"{{{{{name}}}}} is not supported by cais", word)
        return self.branch(name, word)

    def branch(self, name: str, word: _Token) -> Node:
        mark = len(self.vars)
        pipe = self.pipeline(name, word)
        if name == "range":
            self.range_depth += 1
        body, stop = self.items()
        if name == "range":
            self.range_depth -= 1
        otherwise = None
        if stop is None:
            raise self.fail("unexpected EOF")
        if stop.value == "else":
            follow = self.peek()
            if name in ("if", "with") and follow.kind == "keyword" and follow.value == name:
                self.next()  # `{{else if …}}`: an `if` in the else branch, ending at the same {{end}}
                otherwise = [self.branch(name, follow)]
            else:
                self.expect_right("else")
                otherwise, stop = self.items()
                if stop is None:
                    raise self.fail("unexpected EOF")
                if stop.value != "end":
                    raise self.fail("expected end; found {{else}}", stop)
                self.expect_right("end")
        else:
            self.expect_right("end")
        del self.vars[mark:]
        return Node(name, word.pos, pipe.text, pipe, body, otherwise)

    def pipeline(self, context: str, start: _Token) -> Node:
        """[$x[, $y] (:=|=)] command [| command]… up to `}}` (or `)` in parentheses)."""
        decls: list[str] = []
        assign = False
        save = self.i
        token = self.peek()
        if token.kind == "var":
            names = [self.next()]
            while self.peek().kind == "comma" and context == "range":
                self.next()
                if self.peek().kind != "var":
                    raise self.fail("range can only initialize variables", self.peek())
                names.append(self.next())
                if len(names) > 2:
                    raise self.fail("too many declarations in range", names[-1])
            if self.peek().kind in ("declare", "assign"):
                op = self.next()
                assign = op.kind == "assign"
                decls = [t.value for t in names]
                for t in names:
                    if assign and t.value not in self.vars:
                        raise self.fail(f"undefined variable \"{t.value}\"", t)
            elif len(names) > 1:
                raise self.fail(f"too many declarations in {context}", names[1])
            else:
                self.i = save
        cmds: list[Node] = []
        end_kind = "rparen" if context == "paren" else "right"
        while True:
            token = self.peek()
            if token.kind == end_kind:
                self.next()
                break
            if token.kind not in _OPERAND_START:
                raise self.fail(f"unexpected {_describe(token)} in {_context_name(context)}", token)
            cmds.append(self.command(end_kind))
            if self.peek().kind == "pipe":
                self.next()
                if self.peek().kind == end_kind:
                    raise self.fail(f"missing value for {_context_name(context)}")
        if not cmds:
            raise self.fail(f"missing value for {_context_name(context)}", token)
        for k, cmd in enumerate(cmds[1:], 2):
            first = cmd.a[0]
            if first.kind in ("bool", "dot", "nil", "number", "string"):
                raise self.fail(f"non executable command in pipeline stage {k}", token)
        if not assign:
            self.vars.extend(decls)
        text = " | ".join(c.text for c in cmds)
        if decls:
            text = ", ".join(decls) + (" = " if assign else " := ") + text
        return Node("pipe", start.pos, text, cmds, decls, assign)

    def command(self, end_kind: str) -> Node:
        args: list[Node] = []
        while True:
            token = self.peek()
            if token.kind in (end_kind, "pipe"):
                break
            if token.kind not in _OPERAND_START or args and not token.spaced and token.kind != "lparen":
                raise self.fail(f"unexpected {_describe(token)} in operand", token)
            args.append(self.operand())
        if not args:
            raise self.fail("missing value for command", self.peek())
        return Node("command", args[0].pos, " ".join(a.text for a in args), args)

    def operand(self) -> Node:
        node = self.term()
        if self.peek().kind == "field" and not self.peek().spaced:
            chain_pos = self.peek().pos
            fields = []
            while self.peek().kind == "field" and not self.peek().spaced:
                fields.append(self.next().value[1:])
            if node.kind == "field":
                node = Node("field", chain_pos, node.text + "." + ".".join(fields), node.a + fields)
            elif node.kind == "var":
                node = Node("var", chain_pos, node.text + "." + ".".join(fields), node.a, node.b + fields)
            elif node.kind in ("bool", "string", "number", "nil", "dot"):
                raise self.fail(f"unexpected . after term {node.text!r}" if node.kind != "dot" else
                                "unexpected . after term \".\"")
            else:
                node = Node("chain", chain_pos, f"{node.text}." + ".".join(fields), node, fields)
        return node

    def term(self) -> Node:
        token = self.next()
        kind = token.kind
        if kind == "ident":
            if token.value not in self.funcs:
                raise self.fail(f'function "{token.value}" not defined', token)
            return Node("ident", token.pos, token.value)
        if kind == "dot":
            return Node("dot", token.pos, ".")
        if kind == "nil":
            return Node("nil", token.pos, "nil")
        if kind == "var":
            if token.value not in self.vars:
                raise self.fail(f'undefined variable "{token.value}"', token)
            return Node("var", token.pos, token.value, token.value, [])
        if kind == "field":
            return Node("field", token.pos, token.value, [token.value[1:]])
        if kind == "bool":
            return Node("bool", token.pos, token.value, token.value == "true")
        if kind == "number":
            try:
                return Node("number", token.pos, token.value, _number(token.value))
            except ValueError:
                raise self.fail(f"illegal number syntax: {token.value!r}".replace("'", '"'), token) from None
        if kind in ("char", "string"):
            try:
                value = _unquote(token.value)
            except (ValueError, IndexError):
                raise self.fail("invalid syntax", token) from None
            if kind == "string":
                return Node("string", token.pos, token.value, value)
            if len(value) != 1:
                raise self.fail(f"malformed character constant: {token.value}", token)
            return Node("number", token.pos, token.value, ord(value))
        if kind == "lparen":
            pipe = self.pipeline("paren", token)
            return Node("paren", token.pos, f"({pipe.text})", pipe)
        raise self.fail(f"unexpected {_describe(token)} in operand", token)


def _describe(token: _Token) -> str:
    if token.kind == "eof":
        return "EOF"
    if token.kind == "right":
        return '"}}"'
    if token.kind == "keyword":
        return f"<{token.value}>"
    from cais.cli.contexts import go_quote
    return go_quote(token.value[:10]) + "..." if len(token.value) > 10 else go_quote(token.value)


_OPERAND_START = frozenset(("bool", "char", "dot", "field", "ident", "number", "nil", "string", "var", "lparen"))


def _context_name(context: str) -> str:
    return {"paren": "parenthesized pipeline"}.get(context, context)


def parse(text: str, funcs: frozenset[str]) -> list[Node]:
    return _Parser(text, funcs).parse()


# ---- values --------------------------------------------------------------------------------------
def go_type(value: object, raw: bool = False) -> str:
    """VALUE's Go type; RAW: a value of inspect's fallback map (lists and maps of interface {})."""
    if raw and isinstance(value, list):
        return "[]interface {}"
    if raw and isinstance(value, dict) and not hasattr(value, "go_type"):
        return "map[string]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]string" if value and all(isinstance(v, str) for v in value) else "[]interface {}"
    if isinstance(value, dict):
        go = getattr(value, "go_type", "")
        if go:
            return go
        return "map[string]string" if value and all(isinstance(v, str) for v in value.values()) \
            else "map[string]interface {}"
    return "interface {}"


def truth(value: object) -> bool:
    if hasattr(value, "go_type"):  # a struct
        return True
    return bool(value)


def go_float(f: float) -> str:
    """%v of a float64: shortest digits, an exponent below 1e-4 and from 1e21."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    r = repr(f)
    mantissa, _, exp = r.partition("e")
    digits = mantissa.lstrip("-").replace(".", "")
    point = mantissa.lstrip("-").find(".")
    point = len(mantissa.lstrip("-")) if point < 0 else point
    e = point - 1 + (int(exp) if exp else 0)
    digits = digits.lstrip("0") or "0"
    if not exp:
        stripped = mantissa.lstrip("-")
        lead = len(stripped) - len(stripped.lstrip("0."))
        e = point - 1 - (lead - (1 if point == 1 and stripped[0] == "0" else 0)) if stripped.startswith("0") else e
    sign = "-" if r.startswith("-") else ""
    digits = digits.rstrip("0") or "0"
    if -4 <= e < 21:
        if e >= 0:
            whole = (digits + "0" * max(0, e + 1 - len(digits)))
            text = whole[:e + 1] + ("." + whole[e + 1:] if len(whole) > e + 1 else "")
        else:
            text = "0." + "0" * (-e - 1) + digits
        return sign + text
    body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{body}e{'-' if e < 0 else '+'}{abs(e):02d}"


def text(value: object) -> str:
    """fmt.Print of a template value."""
    if value is MISSING:
        return "<no value>"
    if value is None or value is NIL:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(_inner(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_inner(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _inner(value: object) -> str:
    return "<nil>" if value is None or value is MISSING else text(value)


def printed(value: object) -> str:
    """An action's value as the template prints it (a nil interface: no value)."""
    if value is None:
        return "<no value>"
    return text(value)


# ---- printf --------------------------------------------------------------------------------------
def _bad(verb: str, value: object) -> str:
    if value is None or value is MISSING or value is NIL:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(value)}={text(value)})"


def _verb(verb: str, value: object, flags: str, precision: int | None) -> str | None:
    """One operand under VERB, before the width is applied (None: not for this type)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if verb == "v":
        if isinstance(value, str):
            return value if precision is None else value[:precision]
        if isinstance(value, float) and precision is not None:
            return _verb("g", value, flags, precision)
        return "<nil>" if value is None or value is MISSING else ("+" if "+" in flags and is_int and value >= 0
                                                                   else "") + text(value)
    if verb == "s":
        if isinstance(value, str):
            return value if precision is None else value[:precision]
        if isinstance(value, (list, dict)):
            return _s_text(value)
        return None
    if isinstance(value, list):  # Go applies the verb to each element
        return "[" + " ".join(_verb(verb, v, flags, precision) or _bad(verb, v) for v in value) + "]"
    if isinstance(value, dict) and not hasattr(value, "go_type"):
        return "map[" + " ".join(f"{_verb(verb, k, flags, precision) or _bad(verb, k)}:"
                                 f"{_verb(verb, v, flags, precision) or _bad(verb, v)}"
                                 for k, v in sorted(value.items())) + "]"
    if verb == "q":
        if isinstance(value, str):
            from cais.cli.contexts import go_quote
            return go_quote(value if precision is None else value[:precision])
        if is_int:
            return "'" + (chr(value) if chr(value) != "'" else "\\'") + "'"
        return None
    if verb == "t":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if verb in "dboxXc" and is_int:
        if verb == "c":
            return chr(value)
        body = format(abs(value), {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb])
        if precision is not None:
            body = body.rjust(precision, "0")
        if "#" in flags and verb in "xX":
            body = "0" + verb + body
        sign = "-" if value < 0 else "+" if "+" in flags else " " if " " in flags else ""
        return sign + body
    if verb in "xX" and isinstance(value, str):
        out = value.encode().hex()
        return out.upper() if verb == "X" else out
    if verb in "eEfFgG" and isinstance(value, float):
        if verb in "gG" and precision is None:
            body = go_float(value)
            return body.upper() if verb == "G" else body
        body = format(value, ("+" if "+" in flags else "") + f".{6 if precision is None else precision}{verb}")
        return body
    return None


def _s_text(value: object) -> str:
    """%s of any value: strings as they are, in lists and maps too; the others as Go's %!s(T=V)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(_s_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{_s_text(k)}:{_s_text(v)}" for k, v in sorted(value.items())) + "]"
    return _bad("s", value)


def sprintf(fmt: str, args: list[object]) -> str:
    """Go's fmt.Sprintf for the verbs templates use: flags, widths, precisions, Go's %!verb errors."""
    out = []
    used = 0
    i = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c != "%":
            j = fmt.find("%", i)
            j = n if j < 0 else j
            out.append(fmt[i:j])
            i = j
            continue
        i += 1
        flags = ""
        while i < n and fmt[i] in "+-# 0":
            flags += fmt[i]
            i += 1
        width: int | None = None
        precision: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            width = args[used] if used < len(args) and isinstance(args[used], int) else None  # type: ignore[assignment]
            used += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            width = int(fmt[start:i]) if i > start else None
        if i < n and fmt[i] == ".":
            i += 1
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            precision = int(fmt[start:i]) if i > start else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[used]
        used += 1
        body = _verb(verb, value, flags, precision)
        if body is None:
            out.append(_bad(verb, value))
            continue
        if width is not None and len(body) < width:
            if "-" in flags:
                body = body.ljust(width)
            elif "0" in flags and verb in "dboxXeEfFgG" and not isinstance(value, str):
                sign = body[0] if body[:1] in "+- " else ""
                body = sign + body[len(sign):].rjust(width - len(sign), "0")
            else:
                body = body.rjust(width)
        out.append(body)
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(_bad("", v)[3:-1] if v is not None else "<nil>"
                                           for v in args[used:]) + ")")
    return "".join(out)


def sprint(args: list[object]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out = []
    for k, value in enumerate(args):
        if k and not isinstance(value, str) and not isinstance(args[k - 1], str):
            out.append(" ")
        out.append(_inner(value))
    return "".join(out)


# ---- functions -----------------------------------------------------------------------------------
class CallError(Exception):
    """A function's error: `error calling NAME: MESSAGE`."""


class TypeMismatch(Exception):
    """An argument of the wrong type: `wrong type for value; expected T; got U`."""


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeMismatch("string", value)
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeMismatch("int", value)
    return value


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeMismatch("[]string", value)
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: object, *others: object) -> bool:
    if not others:
        raise CallError("missing argument for comparison")
    for other in others:
        a, b = _kind(first), _kind(other)
        if a == "other" or b == "other":
            if (first is None or first is MISSING) and (other is None or other is MISSING):
                return True
            if a == "other" and b == "other" and not isinstance(first, (list, dict)):
                if first == other:
                    return True
                continue
            if a != b and "other" not in (a, b):
                raise CallError("incompatible types for comparison")
            bad = first if a == "other" else other
            raise CallError(f"non-comparable type {_s_text(bad)}: {go_type(bad, raw=True)}")
        if a != b:
            raise CallError("incompatible types for comparison")
        if first == other:
            return True
    return False


def _ne(a: object, b: object) -> bool:
    return not _eq(a, b)


def _lt(a: object, b: object) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("bool", "other") or kb in ("bool", "other"):
        raise CallError("invalid type for comparison")
    if ka != kb:
        raise CallError("incompatible types for comparison")
    return a < b  # type: ignore[operator]


def _le(a: object, b: object) -> bool:
    return _lt(a, b) or _eq(a, b)


def _gt(a: object, b: object) -> bool:
    return not _le(a, b)


def _ge(a: object, b: object) -> bool:
    return not _lt(a, b)


def _len(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, dict)) and not hasattr(value, "go_type"):
        return len(value)
    if value is None or value is MISSING:
        raise CallError("reflect: call of reflect.Value.Type on zero Value")
    if value is NIL:
        raise CallError("len of nil pointer")
    raise CallError(f"len of type {go_type(value)}")


def _index_one(item: object, key: object) -> object:
    if type(item) is NilList:  # fails typed: docker's fallback map holds a null there
        raise CallError("index of untyped nil")
    if isinstance(item, dict) and not hasattr(item, "go_type"):
        if not isinstance(key, str):
            raise CallError(f"value has type {go_type(key)}; should be string")
        if key in item:
            return item[key]
        return "" if item and all(isinstance(v, str) for v in item.values()) else None
    if isinstance(item, (list, str)):
        if not isinstance(key, int) or isinstance(key, bool):
            raise CallError(f"cannot index slice/array with type {go_type(key)}")
        if key == len(item):  # within the slice's capacity: reflect's panic
            raise CallError(f"reflect: {'slice' if isinstance(item, list) else 'string'} index out of range")
        if not 0 <= key < len(item):
            raise CallError(f"index out of range: {key}")
        return item[key] if isinstance(item, list) else item.encode()[key]
    if item is None or item is MISSING or item is NIL:
        raise CallError("index of untyped nil")
    raise CallError(f"can't index item of type {go_type(item)}")


def _index(item: object, *keys: object) -> object:
    for key in keys:
        item = _index_one(item, key)
    return item


def _slice(item: object, *bounds: object) -> object:
    if type(item) is NilList and any(bounds):
        raise CallError("slice of untyped nil")
    if not isinstance(item, (list, str)):
        if item is None or item is MISSING:
            raise CallError("slice of untyped nil")
        raise CallError(f"can't slice item of type {go_type(item)}")
    if len(bounds) > 3 or len(bounds) == 3 and isinstance(item, str):
        raise CallError(f"too many slice indexes: {len(bounds)}")
    size = len(item)
    idx = []
    for b in bounds:
        if not isinstance(b, int) or isinstance(b, bool):
            raise CallError(f"cannot index slice/array with type {go_type(b)}")
        if not 0 <= b <= size:
            raise CallError(f"index out of range: {b}")
        idx.append(b)
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else size
    if lo > hi:
        raise CallError(f"invalid slice index: {lo} > {hi}")
    return item[lo:hi]


def _and(*args: object) -> object:
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _or(*args: object) -> object:
    for a in args:
        if truth(a):
            return a
    return args[-1]


def _title(s: object) -> str:
    out = []
    prev = " "
    for c in _string(s):
        out.append(c.upper() if not _is_alnum(prev) else c)
        prev = c
    return "".join(out)


def _split(s: object, sep: object) -> list[str]:
    s, sep = _string(s), _string(sep)
    return list(s) if sep == "" else s.split(sep)


def _pad(s: object, prefix: object, suffix: object) -> str:
    s = _string(s)
    return s and " " * _int(prefix) + s + " " * _int(suffix)


def _truncate(s: object, length: object) -> str:
    data, length = _string(s).encode(), _int(length)
    return s if len(data) < length else data[:length].decode(errors="replace")  # type: ignore[return-value]


def _json(value: object) -> str:
    from cais.cli.format import go_json
    return go_json(_plain(value))


def _plain(value: object) -> object:
    if value is NIL or value is MISSING or type(value) in (NilMap, NilList):
        return None
    return value


# name: (function, fixed arguments, variadic)
FUNCS: dict[str, tuple[Callable[..., object], int, bool]] = {
    "and": (_and, 1, True), "or": (_or, 1, True), "not": (lambda a: not truth(a), 1, False),
    "len": (_len, 1, False), "index": (_index, 1, True), "slice": (_slice, 1, True),
    "eq": (_eq, 1, True), "ne": (_ne, 2, False), "lt": (_lt, 2, False), "le": (_le, 2, False),
    "gt": (_gt, 2, False), "ge": (_ge, 2, False),
    "print": (lambda *a: sprint(list(a)), 0, True),
    "printf": (lambda f, *a: sprintf(_string(f), list(a)), 1, True),
    "println": (lambda *a: " ".join(_inner(v) for v in a) + "\n", 0, True),
    "json": (_json, 1, False), "split": (_split, 2, False), "join": (lambda a, s: _strings(a) and _string(s).join(a), 2, False),
    "title": (_title, 1, False), "lower": (lambda s: _string(s).lower(), 1, False),
    "upper": (lambda s: _string(s).upper(), 1, False), "pad": (_pad, 3, False), "truncate": (_truncate, 2, False),
}
# the docker CLI's HeaderFunctions: a table's header passes through its own functions unchanged
HEADER_FUNCS = {**FUNCS, **{name: (lambda v, *_: v, FUNCS[name][1], False)
                            for name in ("json", "split", "join", "title", "lower", "upper", "pad", "truncate")}}
NAMES = frozenset(FUNCS)


# ---- execution -----------------------------------------------------------------------------------
class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Executor:
    """Runs parsed nodes on a value; LOOKUP(receiver, name, node) reads a field (format.py's rules)."""

    def __init__(self, lookup: Callable[[object, str, Node, int], object],
                 method: Callable[[object, str, list[object], Node], object],
                 funcs: dict[str, tuple[Callable[..., object], int, bool]] = FUNCS) -> None:
        self.lookup, self.method, self.funcs = lookup, method, funcs
        self.number_type = ""  # inspect's fallback map decodes numbers as json.Number

    def run(self, nodes: list[Node], dot: object, out: list[str]) -> None:
        self.vars: list[tuple[str, object]] = [("$", dot)]
        self.walk(nodes, dot, out)

    def walk(self, nodes: list[Node], dot: object, out: list[str]) -> None:
        for node in nodes:
            kind = node.kind
            if kind == "text":
                out.append(node.text)
            elif kind == "action":
                value = self.pipeline(node.a, dot)  # type: ignore[arg-type]
                if not node.a.b:  # type: ignore[union-attr]
                    out.append(printed(value))
            elif kind in ("if", "with"):
                mark = len(self.vars)
                value = self.pipeline(node.a, dot)  # type: ignore[arg-type]
                if truth(value):
                    self.walk(node.b, value if kind == "with" else dot, out)  # type: ignore[arg-type]
                elif node.c is not None:
                    self.walk(node.c, dot, out)  # type: ignore[arg-type]
                del self.vars[mark:]
            elif kind == "range":
                self.range(node, dot, out)
            elif kind == "break":
                raise _Break
            elif kind == "continue":
                raise _Continue

    def range(self, node: Node, dot: object, out: list[str]) -> None:
        mark = len(self.vars)
        pipe: Node = node.a  # type: ignore[assignment]
        value = self.pipeline(pipe, dot, declare=False)
        if isinstance(value, list):
            pairs: list[tuple[object, object]] = list(enumerate(value))
        elif isinstance(value, dict) and not hasattr(value, "go_type"):
            pairs = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(pipe.b) > 1:  # type: ignore[arg-type]
                raise ExecError(node.pos, node.text, f"can't use {value} to iterate over more than one variable")
            pairs = [(k, k) for k in range(value)]
        elif value is None or value is MISSING or value is NIL:
            pairs = []
        else:
            last = pipe.a[-1]  # type: ignore[index]
            raise ExecError(last.pos, last.text, f"range can't iterate over {text(value)}")
        decls: list[str] = pipe.b  # type: ignore[assignment]
        for key, elem in pairs:
            del self.vars[mark:]
            if len(decls) == 1:
                self._set(decls[0], elem, pipe.c)  # type: ignore[arg-type]
            elif len(decls) == 2:
                self._set(decls[0], key, pipe.c)  # type: ignore[arg-type]
                self._set(decls[1], elem, pipe.c)  # type: ignore[arg-type]
            try:
                self.walk(node.b, elem, out)  # type: ignore[arg-type]
            except _Continue:
                continue
            except _Break:
                break
        del self.vars[mark:]
        if not pairs and node.c is not None:
            self.walk(node.c, dot, out)  # type: ignore[arg-type]

    def _set(self, name: str, value: object, assign: bool) -> None:
        if assign:
            for k in range(len(self.vars) - 1, -1, -1):
                if self.vars[k][0] == name:
                    self.vars[k] = (name, value)
                    return
        self.vars.append((name, value))

    def pipeline(self, pipe: Node, dot: object, declare: bool = True) -> object:
        value: object = _NOFINAL
        for cmd in pipe.a:  # type: ignore[attr-defined]
            value = self.command(cmd, dot, value)
        if declare:
            for name in pipe.b:  # type: ignore[attr-defined]
                self._set(name, value, pipe.c)  # type: ignore[arg-type]
        return value

    def command(self, cmd: Node, dot: object, final: object) -> object:
        args: list[Node] = cmd.a  # type: ignore[assignment]
        first = args[0]
        if first.kind == "ident":
            return self.call(first, cmd, args[1:], dot, final)
        if first.kind == "field":
            return self.field_chain(first, dot, dot, first.a, args[1:], final)  # type: ignore[arg-type]
        if len(args) > 1 or final is not _NOFINAL:
            raise ExecError(first.pos, first.text, f"can't give argument to non-function {first.text}")
        if first.kind == "nil":
            raise ExecError(first.pos, first.text, "nil is not a command")
        return self.operand(first, dot)

    def operand(self, node: Node, dot: object) -> object:
        kind = node.kind
        if kind == "dot":
            return dot
        if kind in ("string", "number", "bool"):
            return node.a
        if kind == "nil":
            return None
        if kind == "field":
            return self.field_chain(node, dot, dot, node.a, [], _NOFINAL)  # type: ignore[arg-type]
        if kind == "var":
            value = self.variable(node)
            return self.field_chain(node, dot, value, node.b, [], _NOFINAL) if node.b else value  # type: ignore[arg-type]
        if kind == "paren":
            return self.pipeline(node.a, dot)  # type: ignore[arg-type]
        if kind == "chain":
            base = self.operand(node.a, dot)  # type: ignore[arg-type]
            return self.field_chain(_innermost(node.a), dot, base, node.b, [], _NOFINAL, -1)  # type: ignore[arg-type]
        if kind == "ident":
            return self.call(node, node, [], dot, _NOFINAL)
        raise ExecError(node.pos, node.text, f"can't handle {node.text}")

    def variable(self, node: Node) -> object:
        for name, value in reversed(self.vars):
            if name == node.a:
                return value
        raise ExecError(node.pos, node.text, f"undefined variable: {node.a}")

    def field_chain(self, node: Node, dot: object, receiver: object, names: list[str], args: list[Node],
                    final: object, first: int = 0) -> object:
        """NAMES read in turn from RECEIVER (the last one a method given ARGS and FINAL); FIRST -1:
        RECEIVER is a computed value (a chain's), not a field of the object."""
        for k, name in enumerate(names):
            last = k == len(names) - 1
            if last and (args or final is not _NOFINAL):
                values = [self.operand(a, dot) for a in args] + ([] if final is _NOFINAL else [final])
                return self.method(receiver, name, values, node)
            receiver = self.lookup(receiver, name, node, k if k or first == 0 else -1)
        return receiver

    def call(self, ident: Node, cmd: Node, args: list[Node], dot: object, final: object) -> object:
        name = ident.text
        function, fixed, variadic = self.funcs[name]
        count = len(args) + (final is not _NOFINAL)
        if count < fixed or not variadic and count != fixed:
            want = f"at least {fixed}" if variadic else str(fixed)
            raise ExecError(ident.pos, ident.text, f"wrong number of args for {name}: want {want} got {count}")
        if name in ("and", "or"):  # short-circuit, as Go 1.18
            value: object = None
            for k, a in enumerate(args):
                value = self.operand(a, dot)
                if truth(value) == (name == "or") or k == len(args) - 1 and final is _NOFINAL:
                    return value
            return final
        values = [self.operand(a, dot) for a in args] + ([] if final is _NOFINAL else [final])
        if name == "len" and self.number_type and _kind(values[0]) in ("int", "float"):
            return len(str(values[0]))  # fails typed; docker's fallback map holds the number's JSON text
        try:
            return function(*values)
        except CallError as e:
            raise ExecError(cmd.pos, cmd.text, f"error calling {name}: {e}") from None
        except TypeMismatch as e:
            want, got = e.args
            if self.number_type and name == "join" and args and isinstance(values[0], list):
                want, got = "[]string", values[0]  # inspect's fallback map: its lists are []interface {}, first
            k = next((k for k, v in enumerate(values) if v is got), 0)
            at = args[k] if k < len(args) else cmd
            if at.kind in ("string", "number", "bool", "nil") and at is not cmd:  # a constant: Go's evalArg
                if want == "[]string":
                    message = f"can't handle {at.text} for arg of type []string"
                else:
                    message = f"expected {'integer' if want == 'int' else want}; found {at.text}"
                raise ExecError(at.pos, at.text, message) from None
            if got is None or got is MISSING or got is NIL:
                raise ExecError(at.pos, at.text, f"invalid value; expected {want}") from None
            number = self.number_type if isinstance(got, (int, float)) and not isinstance(got, bool) else ""
            got_type = number or go_type(got, raw=bool(self.number_type))
            raise ExecError(at.pos, at.text, f"wrong type for value; expected {want}; got {got_type}") from None


_NOFINAL = object()


def _innermost(node: Node) -> Node:
    """The node Go's executor was last `at` after evaluating NODE (where a chain's error points)."""
    while node.kind == "paren":
        last = node.a.a[-1]  # type: ignore[union-attr]
        node = last if last.a[0].kind == "ident" else last.a[0]
    return node
