"""Static scan of the student's program for forbidden built-ins.

A call through an attribute (``F.scaled_dot_product_attention``), an import
(``from torch.nn.functional import scaled_dot_product_attention as sdpa``) or a
module-level alias (``sdpa = F.scaled_dot_product_attention``) used inside an
exercise makes that exercise score 0. Lookups the scan cannot follow (``getattr``
with a computed name, ``__dict__``, ``importlib``) are flagged for manual review;
the run-time trace in the worker is the second line of defence.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from autograder.suite import Forbidden

# Built-ins that look names up at run time (flagged when called by their bare name: model.eval() is fine),
# and library functions that do the same (flagged however they are reached).
DYNAMIC_BUILTINS = {"getattr", "__import__", "eval", "exec", "compile", "globals", "vars"}
DYNAMIC_CALLS = {"import_module", "attrgetter", "methodcaller", "__getattribute__", "getattr_static"}
# Attributes that reach behind a function or into torch's internals (where the trace could be undone).
INTERNAL_ATTRIBUTES = {"__dict__", "__wrapped__", "__closure__", "__globals__", "__code__", "__builtins__",
                       "_C", "_VariableFunctions", "_pop_mode", "_push_mode", "_DisableTorchFunction",
                       "_DisableTorchFunctionSubclass", "overrides", "_python_dispatch",
                       "_getframe", "f_locals", "f_globals", "f_back", "get_objects", "get_referrers", "stack"}
# Modules whose import lets code inspect or rewire the process it runs in.
INTERNAL_MODULES = {"gc", "inspect", "ctypes", "torch._C", "torch.overrides", "torch.utils._python_dispatch",
                    "torch._dispatch", "sys._getframe"}


@dataclass
class Finding:
    exercise: str | None   # the def/class it is in, or the exercise cell it is in
    rule: Forbidden
    cell: int
    line: int

    def message(self) -> str:
        return (f"uses {self.rule.label}, which this exercise forbids (cell {self.cell}, line {self.line}). "
                f"{self.rule.reason}").strip()


def scan(program: list[dict], rules: list[Forbidden], exercises: list[str]) -> tuple[list[Finding], list[str]]:
    """Return forbidden uses, and notes on dynamic lookups worth a person's look."""
    trees = []
    for unit in program:
        try:
            trees.append((unit, ast.parse(unit["source"])))
        except SyntaxError:
            continue  # the worker reports it when loading
    aliases = _module_aliases(trees, rules)
    findings, review = [], []
    for unit, tree in trees:
        cell_exercise = unit.get("grade_id") if unit.get("grade_id") in exercises else None
        for stmt in tree.body:
            scope = stmt.name if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else cell_exercise
            for node in ast.walk(stmt):
                for rule in rules:
                    if not rule.applies_to(scope):
                        continue
                    if _matches(node, rule) or (scope and isinstance(node, ast.Name) and aliases.get(node.id) is rule):
                        findings.append(Finding(scope, rule, unit["index"], node.lineno))
                note = _dynamic_lookup(node)
                if note:
                    review.append(f"cell {unit['index']}, line {node.lineno}: {note}; check by hand that it does not reach a forbidden API")
    return _first_per_scope(findings), review


def _matches(node: ast.AST, rule: Forbidden) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in rule.names
    if isinstance(node, ast.ImportFrom):
        return any(alias.name in rule.names for alias in node.names)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        name = node.args[1] if len(node.args) >= 2 else None
        return isinstance(name, ast.Constant) and name.value in rule.names
    return False


def _module_aliases(trees, rules) -> dict[str, Forbidden]:
    """Names bound at module level to a forbidden API: ``sdpa = F.scaled_dot_product_attention``."""
    aliases: dict[str, Forbidden] = {}
    for _, tree in trees:
        for stmt in tree.body:
            for rule in rules:
                if isinstance(stmt, ast.Assign) and any(_matches(n, rule) for n in ast.walk(stmt.value)):
                    for target in stmt.targets:
                        if isinstance(target, ast.Name):
                            aliases[target.id] = rule
                elif isinstance(stmt, ast.ImportFrom):
                    for alias in stmt.names:
                        if alias.name in rule.names:
                            aliases[alias.asname or alias.name] = rule
    return aliases


def _dynamic_lookup(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES and not (
            node.attr == "stack" and not (isinstance(node.value, ast.Name) and node.value.id == "inspect")):
        return f"reads .{node.attr}"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom):
            modules += [f"{node.module}.{a.name}" for a in node.names]
        hit = next((m for m in modules if m in INTERNAL_MODULES or m.startswith(("torch._", "torch.utils._"))), None)
        if hit:
            return f"imports {hit}"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if (isinstance(func, ast.Name) and name in DYNAMIC_BUILTINS) or name in DYNAMIC_CALLS:
            if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                return None  # getattr(obj, "literal") is visible to the scan's reader
            return f"calls {name}() with a computed argument"
    return None


def _first_per_scope(findings: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for f in findings:
        key = (f.exercise, f.rule.label)
        if key not in seen:
            seen.add(key)
            kept.append(f)
    return kept
