"""Row selectors such as ``difficulty >= 4 and topic == 'algebra'``.

A small, safe subset of Python expression syntax (comparisons, ``and``/``or``
/``not``, ``in [...]``, column names, literals) compiled to a
``pyarrow.compute`` expression, so selection runs vectorised inside Arrow
and nothing is ``eval``-ed. Ray Data's own string filters are deprecated, and
Arrow expressions are what it compiles them to. A row whose column is null
is not selected. pyarrow is imported on use: the spec validator reads
``where_columns`` while DAGs are parsed.
"""
from __future__ import annotations

import ast
import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.compute as pc

_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
        ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}


class WhereError(ValueError):
    pass


def _parse(text: str) -> ast.AST:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise WhereError(f"where {text!r} is not a valid expression: {exc.msg}") from None


def where_columns(text: str) -> set[str]:
    """The columns an expression reads (what the spec validator checks)."""
    return {n.id for n in ast.walk(_parse(text)) if isinstance(n, ast.Name)}


def compile_where(text: str, columns: list[str] | None = None) -> pc.Expression:
    """The Arrow expression for ``text``; unknown columns are an error naming them."""
    tree = _parse(text)
    names = where_columns(text)
    if columns is not None and names - set(columns):
        raise WhereError(f"where {text!r} uses unknown column(s) {sorted(names - set(columns))}; "
                         f"columns: {sorted(columns)}")
    return _compile(tree, text)


def _compile(node: ast.AST, text: str):
    import pyarrow.compute as pc

    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, text) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_compile(node.operand, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Compare):
        out, left = None, node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.List, ast.Tuple)):
                    raise WhereError(f"where {text!r}: 'in' needs a literal list")
                values = [_literal(v, text) for v in right.elts]
                term = pc.field(_name(left, text)).isin(values)
                term = ~term if isinstance(op, ast.NotIn) else term
            elif type(op) in _CMP:
                term = _CMP[type(op)](_compile(left, text), _compile(right, text))
            else:
                raise WhereError(f"where {text!r}: operator {type(op).__name__} not supported")
            out = term if out is None else (out & term)
            left = right
        return out
    if isinstance(node, ast.Name):
        return pc.field(node.id)
    if isinstance(node, ast.Constant):
        return pc.scalar(node.value)
    raise WhereError(f"where {text!r}: {type(node).__name__} is not supported "
                     "(use comparisons, and/or/not, in [...], columns and literals)")


def _name(node: ast.AST, text: str) -> str:
    if not isinstance(node, ast.Name):
        raise WhereError(f"where {text!r}: left of 'in' must be a column")
    return node.id


def _literal(node: ast.AST, text: str):
    if isinstance(node, ast.Constant):
        return node.value
    raise WhereError(f"where {text!r}: list items must be literals")
