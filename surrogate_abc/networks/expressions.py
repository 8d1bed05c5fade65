"""A tiny, safe arithmetic-expression evaluator for derived parameters in protocol configs.

Expressions such as "mean_protein * d1 * d0 * (k0 + k1) / (v0 * k0)" are parsed with `ast` and
evaluated element-wise on numpy arrays. Only numbers, names, + - * / ** and a few functions are
allowed, so a config file can never run code.
"""
from __future__ import annotations

import ast
import functools
import math
from typing import Callable, Collection, Mapping

import numpy as np

FUNCTIONS: dict[str, Callable] = {
    "round": np.rint,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "floor": np.floor,
    "ceil": np.ceil,
    "abs": np.abs,
    "min": lambda *a: functools.reduce(np.minimum, a),
    "max": lambda *a: functools.reduce(np.maximum, a),
}

_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}


class ExpressionError(ValueError):
    """The expression uses something outside the allowed grammar, or an unknown name."""


def names_in(expr: str) -> set[str]:
    """Variable names an expression refers to (function names excluded)."""
    tree = _parse(expr)
    _check(tree.body)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def evaluate(expr: str | float | int, env: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Evaluate `expr` with the variables in `env` (arrays broadcast element-wise)."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return np.asarray(float(expr))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(_eval(_parse(str(expr)).body, env), dtype=float)


def _check(node: ast.AST) -> None:
    """Raise ExpressionError if the tree uses anything outside the grammar (without evaluating it)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left)
        _check(node.right)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand)
        return
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(f"unknown function {node.func.id!r} (allowed: {', '.join(FUNCTIONS)})")
        for a in node.args:
            _check(a)
        return
    raise ExpressionError(f"unsupported syntax {ast.dump(node)[:60]!r}; use numbers, names, + - * / ** and {', '.join(FUNCTIONS)}")


@functools.lru_cache(maxsize=1024)
def _parse(expr: str) -> ast.Expression:
    try:
        return ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse expression {expr!r}: {exc.msg}") from None


def _eval(node: ast.AST, env: Mapping[str, np.ndarray | float]):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExpressionError(f"unknown name {node.id!r} (known: {', '.join(sorted(env))})")
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(f"unknown function {node.func.id!r} (allowed: {', '.join(FUNCTIONS)})")
        return FUNCTIONS[node.func.id](*[_eval(a, env) for a in node.args])
    raise ExpressionError(f"unsupported syntax {ast.dump(node)[:60]!r}; use numbers, names, + - * / ** and {', '.join(FUNCTIONS)}")


def degree(expr: str, variables: Collection[str]) -> float:
    """Polynomial degree of `expr` in `variables` (other names are constants); math.inf when it is not a
    polynomial in them (a variable inside a function, a division by a variable, a non-integer power)."""
    return _degree(_parse(str(expr)).body, set(variables))


def _degree(node: ast.AST, var: set[str]) -> float:
    if isinstance(node, ast.Constant):
        return 0.0
    if isinstance(node, ast.Name):
        return 1.0 if node.id in var else 0.0
    if isinstance(node, ast.UnaryOp):
        return _degree(node.operand, var)
    if isinstance(node, ast.BinOp):
        left, right = _degree(node.left, var), _degree(node.right, var)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return max(left, right)
        if isinstance(node.op, ast.Mult):
            return left + right
        if isinstance(node.op, ast.Div):
            return left if right == 0 else math.inf
        if isinstance(node.op, ast.Pow):
            if left == 0 and right == 0:
                return 0.0
            exp = node.right
            if (right == 0 and isinstance(exp, ast.Constant) and isinstance(exp.value, (int, float))
                    and float(exp.value).is_integer() and exp.value >= 0):
                return left * float(exp.value)
            return math.inf
    if isinstance(node, ast.Call):
        return 0.0 if all(_degree(a, var) == 0 for a in node.args) else math.inf
    return math.inf


_C_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def to_gillespy2(expr: str) -> str:
    """The expression in the syntax gillespy2's C++ code generator accepts: the same arithmetic, `abs` as `fabs`
    (the double overload), and `min`/`max` written with `fabs` (gillespy2's namespace has neither)."""
    tree = _parse(str(expr))
    _check(tree.body)
    return _c(tree.body)


def _c(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # _check admits numeric constants only
        return repr(float(node.value))
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        return f"({'-' if isinstance(node.op, ast.USub) else '+'}{_c(node.operand)})"
    if isinstance(node, ast.BinOp):
        return f"({_c(node.left)} {_C_OPS[type(node.op)]} {_c(node.right)})"
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    args = [_c(a) for a in node.args]
    name = node.func.id
    if name in ("min", "max"):
        sign = "-" if name == "min" else "+"
        out = args[0]
        for b in args[1:]:
            out = f"(({out} + {b} {sign} fabs({out} - {b})) / 2.0)"
        return out
    return f"{'fabs' if name == 'abs' else name}({', '.join(args)})"
