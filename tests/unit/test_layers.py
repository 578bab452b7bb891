"""The product's imports run one way only: a module imports its own layer or a lower one, never a higher one."""

import ast
from pathlib import Path

import hosting_automator

PACKAGE = Path(hosting_automator.__file__).parent

# lowest first; a module's layer is that of the longest prefix of its dotted name listed here
LAYERS = [
    ["hosting_automator.masking", "hosting_automator"],  # the package itself holds only __version__
    ["hosting_automator.errors"],
    ["hosting_automator.core", "hosting_automator.domains"],
    ["hosting_automator.services", "hosting_automator.report"],
    ["hosting_automator.site"],
    ["hosting_automator.run", "hosting_automator.check"],
    ["hosting_automator.main"],
]


def layer_of(module):
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def project_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hosting_automator"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("hosting_automator"))


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        upward += [f"{module} imports {imported}" for imported in project_imports(path)
                   if layer_of(imported) > layer_of(module)]
    assert upward == []


def test_the_layer_rule_sees_an_upward_import():
    assert layer_of("hosting_automator.core.logging_setup") > layer_of("hosting_automator.errors")
    assert list(project_imports(PACKAGE / "main.py"))  # the walk finds imports at all
