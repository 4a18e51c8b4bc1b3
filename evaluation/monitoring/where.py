"""``--where`` filters over captured, scored records: ``rating=down or groundedness<3``.

Grammar (pyparsing ``infix_notation``; precedence ``not`` > ``and`` > ``or``, parentheses group)::

    expr       := term (("or" | "and") term)* | "not" expr | "(" expr ")"
    comparison := FIELD OP VALUE          OP: = != < <= > >=   VALUE: number | word | "quoted"

A record with no value for a field (not scored, no feedback) matches no comparison on it, so
``groundedness<3`` never selects unscored records and ``not rating=up`` selects unrated ones.

    >>> f = parse_where("rating=down or groundedness<3")
    >>> f({"rating": "down"}), f({"groundedness": 4.0}), f({"groundedness": 2.0})
    (True, False, True)
    >>> parse_where("groundness<3")
    Traceback (most recent call last):
    ...
    evaluation.monitoring.errors.WhereError: unknown field 'groundness' in --where; fields: ...
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pyparsing as pp

from evaluation.monitoring.errors import WhereError

__all__ = ["FIELDS", "Predicate", "parse_where"]

Predicate = Callable[[dict[str, Any]], bool]

# field -> kind; "num" compares numerically, "text" by string equality (and order)
FIELDS: dict[str, str] = {
    "rating": "rating",  # up | down | 1..5 (up counts as 5, down as 1 for < and >)
    "groundedness": "num",
    "relevance": "num",
    "online_score": "num",
    "answer_length": "num",
    "retrieval_score": "num",
    "refused": "bool",
    "safety_blocked": "bool",
    "deployment": "text",
    "alias": "text",
    "variant": "text",
    "team": "text",
    "finish_reason": "text",
    "tag": "tags",  # tag=wrong: the feedback's tags contain "wrong"
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _grammar() -> pp.ParserElement:
    field = pp.Word(pp.alphas + "_", pp.alphanums + "_")
    op = pp.one_of("== != <= >= = < >")
    number = pp.Regex(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?").set_parse_action(lambda t: float(t[0]))
    word = pp.Word(pp.alphanums + "_.:/@-")
    value = number | pp.QuotedString('"') | pp.QuotedString("'") | word
    comparison = pp.Group(field + op + value)
    return pp.infix_notation(
        comparison,
        [
            (pp.CaselessKeyword("not"), 1, pp.OpAssoc.RIGHT),
            (pp.CaselessKeyword("and"), 2, pp.OpAssoc.LEFT),
            (pp.CaselessKeyword("or"), 2, pp.OpAssoc.LEFT),
        ],
    )


_GRAMMAR = _grammar()


def _rating_number(v: Any) -> float | None:
    if isinstance(v, str):
        return {"up": 5.0, "down": 1.0}.get(v.lower())
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _compare(name: str, op: str, want: Any) -> Predicate:
    if name not in FIELDS:
        raise WhereError(f"unknown field {name!r} in --where; fields: {', '.join(sorted(FIELDS))}")
    kind, fn = FIELDS[name], _OPS[op]
    if kind == "num":
        if not isinstance(want, float):
            raise WhereError(f"--where: {name} compares with a number, not {want!r}")
        return lambda r: isinstance(r.get(name), int | float) and fn(float(r[name]), want)
    if kind == "bool":
        text = str(want).lower()
        if op not in ("=", "==", "!=") or text not in ("true", "false", "1.0", "0.0"):
            raise WhereError(f"--where: use {name}=true or {name}=false")
        flag = text in ("true", "1.0")
        return lambda r: r.get(name) is not None and fn(bool(r[name]), flag)
    if kind == "tags":
        if op not in ("=", "==", "!="):
            raise WhereError("--where: use tag=NAME or tag!=NAME")
        neg = op == "!="
        return lambda r: (str(want) in (r.get("tags") or [])) != neg
    if kind == "rating":
        if op in ("=", "==", "!="):
            target: Any = want if isinstance(want, float) else str(want).lower()
            if target not in ("up", "down") and not isinstance(target, float):
                raise WhereError(f"--where: rating is up, down or 1..5, not {want!r}")

            def eq(r: dict[str, Any]) -> bool:
                v = r.get("rating")
                if v is None:
                    return False
                got: Any = float(v) if isinstance(v, int | float) else str(v).lower()
                return fn(got, target)

            return eq
        num = _rating_number(want if isinstance(want, float) else str(want))
        if num is None:
            raise WhereError(f"--where: rating {op} needs a number or up/down, not {want!r}")
        return lambda r: (g := _rating_number(r.get("rating"))) is not None and fn(g, num)
    if isinstance(want, float) and want.is_integer():
        want = str(int(want))
    return lambda r: r.get(name) is not None and fn(str(r[name]), str(want))


def _build(node: Any) -> Predicate:
    if (
        isinstance(node, pp.ParseResults)
        and len(node) == 3
        and isinstance(node[1], str)
        and node[1] in _OPS
    ):
        return _compare(str(node[0]), str(node[1]), node[2])
    items = list(node)
    if len(items) == 2 and str(items[0]).lower() == "not":
        inner = _build(items[1])
        return lambda r: not inner(r)
    preds = [_build(x) for x in items[::2]]
    ops = [str(x).lower() for x in items[1::2]]
    if ops and all(o == "and" for o in ops):
        return lambda r: all(p(r) for p in preds)
    if ops and all(o == "or" for o in ops):
        return lambda r: any(p(r) for p in preds)
    if len(preds) == 1:
        return preds[0]
    raise WhereError("--where: cannot combine these terms")  # pragma: no cover - grammar forbids


def parse_where(text: str) -> Predicate:
    """A predicate over record dicts; WhereError (one line) when ``text`` is not valid."""
    if not text or not text.strip():
        raise WhereError("--where is empty")
    try:
        parsed = _GRAMMAR.parse_string(text, parse_all=True)
    except pp.ParseException as e:
        raise WhereError(
            f"--where does not parse at column {e.column}: {text!r} "
            "(use FIELD OP VALUE joined by and/or/not, e.g. rating=down or groundedness<3)"
        ) from e
    return _build(parsed[0])
