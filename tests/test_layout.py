"""The package's shape: imports flow one way (utils < models < data < analysis < training < loaders < studies <
cli), no import circle, no private name imported across files, and no script edits sys.path."""
import ast
import importlib
import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ['moga_lab.utils', 'moga_lab.models', 'moga_lab.data', 'moga_lab.analysis', 'moga_lab.training',
          'moga_lab.loaders', 'moga_lab.studies', 'moga_lab.cli']


def _modules():
    out = {}
    for path in (ROOT / 'moga_lab').rglob('*.py'):
        name = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
        out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
    return out


def _imports(name, path, modules):
    """(imported module, names) for every import of a package module in ``path``, lazy imports included."""
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f'{base}.{alias.name}'
                yield (target, None) if target in modules else (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def _graph():
    modules = _modules()
    return modules, {name: {(t, n) for t, n in _imports(name, path, modules) if t in modules and t != name}
                     for name, path in modules.items()}


def _layer(name):
    return next((i for i, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + '.')), None)


def test_imports_flow_one_way():
    _, graph = _graph()
    upward = sorted(f'{a} -> {b}' for a, deps in graph.items() for b, _ in deps
                    if None not in (_layer(a), _layer(b)) and _layer(b) > _layer(a))
    assert upward == []


def test_no_import_circle():
    modules, graph = _graph()
    packages = {m for m, p in modules.items() if p.name == '__init__.py'}  # re-exports are not dependencies
    edges = {a: {b for b, _ in deps if b not in packages} for a, deps in graph.items()}
    seen, stack, circles = {}, [], []

    def visit(node):
        seen[node] = 'open'
        stack.append(node)
        for nxt in edges[node]:
            if seen.get(nxt) == 'open':
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 'done'
    for node in edges:
        if node not in seen:
            visit(node)
    assert circles == []


def test_no_private_name_crosses_files():
    _, graph = _graph()
    private = sorted(f'{a}: {b}.{n}' for a, deps in graph.items() for b, n in deps
                     if n and n.startswith('_') and not n.startswith('__'))
    assert private == []


def test_no_script_edits_sys_path():
    offenders = [str(p.relative_to(ROOT)) for folder in ('moga_lab', 'experiments', 'analysis', 'benchmarks', 'tests')
                 for p in (ROOT / folder).rglob('*.py')
                 if p.name != 'test_layout.py' and re.search(r'sys\.path\.(insert|append)', p.read_text())]
    assert offenders == []


def test_every_imported_package_name_exists():
    """Each ``from moga_lab.X import name`` in the package, tests, scripts and benchmarks, lazy ones included, names
    something X has: a moved name fails here, not in a user's run."""
    missing = []
    for folder in ('moga_lab', 'experiments', 'analysis', 'benchmarks', 'tests'):
        for path in (ROOT / folder).rglob('*.py'):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or '').startswith('moga_lab'):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        if not hasattr(module, alias.name) and \
                                importlib.util.find_spec(f'{node.module}.{alias.name}') is None:
                            missing.append(f'{path.relative_to(ROOT)}: {node.module}.{alias.name}')
    assert missing == []
