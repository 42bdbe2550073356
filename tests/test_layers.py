"""The layers import downward only, and no modules import each other in a cycle.

Layers, lowest first (``docs/architecture.md``): core (``shoprec.core``) →
transforms and io (``shoprec.io``) → pipelines | trainer → app
(``shoprec.app``, ``shoprec.__main__``, and the benchmarks beside it). Every
``import`` statement counts, function-local ones included. ``shoprec`` itself
(the package that selects Keras 2) is below every layer.
"""

import ast
import os
from typing import Dict, List, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("shoprec", "transforms", "pipelines", "trainer", "benchmarks")

# Layer of a module: the longest prefix listed here wins.
LAYER_OF = {
    "shoprec.core": "core",
    "transforms": "transforms",
    "shoprec.io": "io",
    "pipelines": "pipelines",
    "trainer": "trainer",
    "shoprec.app": "app",
    "shoprec.__main__": "app",
    "benchmarks": "app",
}
# What each layer may import, besides the ``shoprec`` package itself.
ALLOWED = {
    "core": {"core"},
    "transforms": {"core", "transforms"},
    "io": {"core", "io"},
    "pipelines": {"core", "transforms", "io", "pipelines"},
    "trainer": {"core", "transforms", "io", "trainer"},
    "app": {"core", "transforms", "io", "pipelines", "trainer", "app"},
}


def layer_of(module: str):
    matches = [p for p in LAYER_OF if module == p or module.startswith(p + ".")]
    return LAYER_OF[max(matches, key=len)] if matches else None


def project_modules(root: str = REPO) -> Dict[str, str]:
    """{dotted module name: file path} of every project module."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(root, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    if dotted.endswith(".__init__"):
                        dotted = dotted[:-len(".__init__")]
                    out[dotted] = path
    return out


def imports_of(path: str, module: str, known: Set[str]) -> List[Tuple[int, str]]:
    """(line, project module) for every import statement in the file, nested ones too."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from a import b` imports a, and a.b when b is a module.
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names
                      if f"{base}.{a.name}" in known]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def graph(root: str = REPO) -> Dict[str, List[Tuple[int, str]]]:
    modules = project_modules(root)
    known = set(modules)
    return {m: imports_of(p, m, known) for m, p in modules.items()}


def upward_imports(root: str = REPO) -> List[str]:
    """Every import that goes up a layer or sideways between pipelines and trainer."""
    modules = project_modules(root)
    problems = []
    for module, edges in graph(root).items():
        layer = layer_of(module)
        for line, target in edges:
            to = layer_of(target)
            if layer is None or to is None or to in ALLOWED[layer]:
                continue
            rel = os.path.relpath(modules[module], root)
            problems.append(f"{rel}:{line} imports {target} ({to}); the {layer} layer may "
                            f"import only {sorted(ALLOWED[layer])}")
    return sorted(problems)


def cycles(root: str = REPO) -> List[List[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    known = set(project_modules(root))
    edges = {m: sorted({t for _, t in e if t in known and t != m})
             for m, e in graph(root).items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_every_module_has_a_layer():
    assert [m for m in project_modules() if m != "shoprec" and layer_of(m) is None] == []


def test_no_upward_or_sideways_import():
    problems = upward_imports()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_no_import_cycle():
    found = cycles()
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    # A copy of the rule on a tiny tree: a core module importing the app,
    # and two pipelines modules importing each other.
    for path, text in {
            "shoprec/__init__.py": "",
            "shoprec/core/__init__.py": "",
            "shoprec/core/registry.py": "def f():\n    from shoprec.app import cli\n",
            "shoprec/app/__init__.py": "",
            "shoprec/app/cli.py": "import shoprec\n",
            "pipelines/__init__.py": "",
            "pipelines/a.py": "from pipelines import b\n",
            "pipelines/b.py": "import pipelines.a\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert upward_imports(str(tmp_path)) == [
        "shoprec/core/registry.py:2 imports shoprec.app (app); the core layer may import "
        "only ['core']",
        "shoprec/core/registry.py:2 imports shoprec.app.cli (app); the core layer may import "
        "only ['core']"]
    assert cycles(str(tmp_path)) == [["pipelines.a", "pipelines.b"]]
