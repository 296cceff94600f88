"""The library's layers and what each may import (read from the source with `ast`, nothing imported).

    core      the mathematics, pure torch          imports no other layer, no transformers, no plotting
    toy       the exact worlds                     core
    perf      speed and its meters                 core, perf; no transformers
    llm       a real causal LM                     core, perf, llm        (the only layer with transformers)
    teaching  exercises, explorer, plots, grading  anything
Plus: no module over ~300 lines, and the library never imports a lesson or a script.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "reinforce_edu"
LAYERS = ("core", "toy", "perf", "llm", "teaching")
ALLOWED = {"core": {"core"}, "toy": {"core", "toy"}, "perf": {"core", "perf"},
           "llm": {"core", "perf", "llm"}, "teaching": set(LAYERS)}
THIRD_PARTY_BANNED = {"core": {"transformers", "matplotlib", "ipywidgets"}, "toy": {"transformers"},
                      "perf": {"transformers", "matplotlib"}}
MAX_LINES = 300  # "no module over ~300 lines"


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (absolute; relative ones resolved against its package)."""
    names = set()
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(PKG).parts
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else None


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_each_layer_imports_only_what_it_may(path):
    layer = layer_of(path)
    names = imported(path)
    for name in names:
        assert not name.startswith(("lessons", "scripts", "benchmarks", "notebooks")), f"{path.name} imports {name}"
    if layer is None:
        return  # the package root: __init__ and the `python -m reinforce_edu.train` entry point
    used = {n.split(".")[1] for n in names if n.startswith("reinforce_edu.") and n.split(".")[1] in LAYERS}
    assert used <= ALLOWED[layer], f"{path.relative_to(PKG)} ({layer}) imports {sorted(used - ALLOWED[layer])}"
    banned = {n.split(".")[0] for n in names} & THIRD_PARTY_BANNED.get(layer, set())
    assert not banned, f"{path.relative_to(PKG)} ({layer}) imports {sorted(banned)}"


def test_every_module_sits_in_a_layer_and_stays_small():
    loose = [p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "train.py")]
    assert loose == [], f"modules outside the five layers: {loose}"
    long = {str(p.relative_to(PKG)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_the_checker_sees_a_violation(tmp_path):
    """The rule can fail: a core module importing the llm layer is caught."""
    bad = PKG / "core" / "_layout_probe.py"
    try:
        bad.write_text("from reinforce_edu.llm.trainer import Trainer\nimport transformers\n")
        with pytest.raises(AssertionError, match=r"imports \['llm'\]"):
            test_each_layer_imports_only_what_it_may(bad)
    finally:
        bad.unlink()


def test_functions_stay_short():
    """No function body over ~60 lines (its docstring not counted): a reader sees each one whole."""
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = (node.body[1:] if ast.get_docstring(node) is not None else node.body) or node.body
                n = body[-1].end_lineno - body[0].lineno + 1
                if n > 60:
                    long.append(f"{path.relative_to(PKG)}:{node.name} ({n} lines)")
    assert long == [], long
