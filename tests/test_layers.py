"""The package's layers only point down: no import circle, no upward import.

The layering is written once, in BUILD_NOTES.md's ```layers block; these tests read it and
every import statement of kerasdistill/ (function-level ones included), without
importing anything.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "kerasdistill"


def written_layers(text: str) -> dict[str, int]:
    """{module prefix: layer} from the ```layers block of BUILD_NOTES.md."""
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    if block is None:
        raise AssertionError("BUILD_NOTES.md has no ```layers block")
    layers = {}
    for line in block.group(1).strip().splitlines():
        number, *names = line.split()
        for name in names:
            layers[name] = int(number)
    return layers


def package_modules(root: str) -> dict[str, str]:
    """{dotted module name: file path} of every module under the package."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from every import statement. Importing
    a.b.c also runs a.b's __init__, so that counts as imported too; the package's root
    runs before any of its modules and counts only when a module imports it by name."""
    graph = {}
    for name, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                parts = imported.split(".")
                if parts[0] != PACKAGE:
                    continue
                if len(parts) == 1 or (len(parts) == 2 and imported not in modules):
                    targets.add(PACKAGE)  # `import kerasdistill`, `from kerasdistill import x`
                for end in range(2, len(parts) + 1):
                    prefix = ".".join(parts[:end])
                    # A module's own packages have run before it: no edge to them.
                    if prefix in modules and prefix != name and \
                            not name.startswith(prefix + "."):
                        targets.add(prefix)
        graph[name] = targets
    return graph


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest prefix of `module` the table names."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in layers:
            return layers[prefix]
    return None


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layering_faults(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every circle, upward import, unplaced module and import of the package's root."""
    faults = [f"circle: {' <-> '.join(group)}" for group in circles(graph)]
    for module in sorted(graph):
        if module == PACKAGE:
            continue
        own = layer_of(module, layers)
        if own is None:
            faults.append(f"{module} has no layer in BUILD_NOTES.md")
            continue
        for imported in sorted(graph[module]):
            if imported == PACKAGE:
                faults.append(f"{module} imports the package's root (its public face)")
                continue
            theirs = layer_of(imported, layers)
            if theirs is not None and theirs > own:
                faults.append(f"{module} (layer {own}) imports {imported} (layer {theirs})")
    return faults


@pytest.fixture(scope="module")
def real():
    with open(os.path.join(REPO_ROOT, "BUILD_NOTES.md")) as f:
        layers = written_layers(f.read())
    return import_graph(package_modules(REPO_ROOT)), layers


def test_layers_only_point_down(real):
    graph, layers = real
    assert len(graph) > 60  # the walk found the package
    assert layering_faults(graph, layers) == []


def test_function_level_imports_count(real):
    graph, _ = real
    # run_identity reads the checkpoint only inside a function: the walk must see it.
    assert "kerasdistill.distill.checkpoint" in graph["kerasdistill.distill.identity"]


def test_a_planted_circle_is_found(real):
    graph, layers = real
    planted = {module: set(targets) for module, targets in graph.items()}
    # data.registry importing experiment, which imports data.registry: a circle that also
    # points up eight layers.
    planted["kerasdistill.data.registry"].add("kerasdistill.experiment")
    faults = layering_faults(planted, layers)
    assert any(fault.startswith("circle:") and "kerasdistill.experiment" in fault and
               "kerasdistill.data.registry" in fault for fault in faults)
    assert "kerasdistill.data.registry (layer 3) imports kerasdistill.experiment (layer 11)" \
        in faults


def test_a_circle_within_one_layer_is_found():
    graph = {"kerasdistill.data.a": {"kerasdistill.data.b"},
             "kerasdistill.data.b": {"kerasdistill.data.c"},
             "kerasdistill.data.c": {"kerasdistill.data.a"}}
    assert layering_faults(graph, {"kerasdistill.data": 3}) == [
        "circle: kerasdistill.data.a <-> kerasdistill.data.b <-> kerasdistill.data.c"]


def test_an_unplaced_module_and_an_import_of_the_root_are_faults():
    graph = {"kerasdistill.newpart.x": set(), "kerasdistill.data.y": {"kerasdistill"},
             "kerasdistill": set()}
    assert layering_faults(graph, {"kerasdistill.data": 3}) == [
        "kerasdistill.data.y imports the package's root (its public face)",
        "kerasdistill.newpart.x has no layer in BUILD_NOTES.md"]


def test_relative_and_function_level_imports_are_read(tmp_path):
    package = tmp_path / PACKAGE / "data"
    package.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (package / "b.py").write_text("from kerasdistill.data.a import f\n")
    graph = import_graph(package_modules(str(tmp_path)))
    assert graph["kerasdistill.data.a"] >= {"kerasdistill.data.b"}
    assert graph["kerasdistill.data.b"] >= {"kerasdistill.data.a"}
    assert circles(graph) == [["kerasdistill.data.a", "kerasdistill.data.b"]]
