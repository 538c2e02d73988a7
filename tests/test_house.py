"""The house rules that code review checks, checked on every run: functions
of tens of lines, the library free of model code, and `models/common/`
free of any one application."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80  # code lines, the docstring left out


def _modules(*folders):
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imported(tree):
    """Dotted names of the modules `tree` imports (`from a import b` gives
    both a and a.b)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def long_functions(source):
    """(name, code lines) of the functions in `source` longer than the limit;
    a function's docstring does not count."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if ast.get_docstring(node) is not None:
                doc = node.body[0]
                lines -= doc.end_lineno - doc.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found.append((node.name, lines))
    return found


@pytest.mark.parametrize("path", _modules("keras_legw", "models"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_are_tens_of_lines(path):
    assert long_functions(path.read_text()) == []


def test_the_length_rule_counts_code_not_docstrings():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    doc = '    """' + "\n" * 30 + '    """\n'
    assert long_functions(f"def f():\n{doc}{body}\n") == []  # 80 lines
    assert long_functions(f"def f():\n{body}\n    return 0\n") == [("f", 81)]


def test_the_library_imports_no_model_or_bench_code():
    for path in _modules("keras_legw"):
        bad = [name for name in _imported(ast.parse(path.read_text()))
               if name.split(".")[0] in ("models", "bench", "tests")]
        assert bad == [], path


def test_shared_model_code_imports_no_application():
    for path in _modules("models/common"):
        bad = [name for name in _imported(ast.parse(path.read_text()))
               if name.startswith("models.") and not name.startswith(
                   "models.common")]
        assert bad == [], path
