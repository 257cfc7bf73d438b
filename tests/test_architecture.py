"""The parts of rlkit and the rules between them (docs/architecture.md), read from the source with `ast`:
every module belongs to a part, a part imports only the parts below it (no back-edges, no cycles),
nothing in rlkit imports the benchmark, and no module assigns into another module's namespace."""
from __future__ import annotations

import ast

from tests.conftest import REPO

# module (or package) -> part; the longest matching prefix wins
PARTS = {
    "rlkit": "leaf", "rlkit.paths": "leaf", "rlkit.text": "leaf",
    "rlkit.algos": "algos",
    "rlkit.data": "data",
    "rlkit.rewards": "rewards",
    "rlkit.models": "models",
    "rlkit.backends": "backends",
    "rlkit.checkpoint": "state", "rlkit.tracking": "state", "rlkit.spool": "state",
    "rlkit.config": "config",
    "rlkit.distributed": "distributed",
    "rlkit.rollout": "rollout",
    "rlkit.eval": "eval",
    "rlkit.steps": "loop", "rlkit.train": "loop",
    "rlkit.report": "report",
    "rlkit.launch": "launch",
    # entry points (commands): may import any part
    "rlkit.run": "entry", "rlkit.passrate": "entry", "rlkit.status": "entry", "rlkit.submit": "entry", "rlkit.sync": "entry",
    "rlkit.bench": "entry", "rlkit.models.build_tiny": "entry", "rlkit.report.__main__": "entry",
    "rlkit.eval.__main__": "entry",
}
# part -> the parts it may import (besides itself)
ALLOWED = {
    "leaf": set(),
    "algos": set(),
    "data": {"leaf"},
    "rewards": {"leaf", "data"},
    "models": {"leaf", "data"},
    "backends": set(),
    "state": {"leaf"},
    "config": {"leaf", "algos", "data", "rewards", "backends"},
    "distributed": {"leaf", "state", "config"},
    "rollout": {"leaf", "algos", "models", "distributed"},
    "eval": {"leaf", "data", "rewards", "rollout", "config"},
    "loop": {"leaf", "algos", "data", "rewards", "models", "backends", "state", "config", "distributed", "rollout",
             "eval"},
    "report": {"leaf"},
    "launch": {"leaf", "state", "config", "report"},
    "entry": {"leaf", "algos", "data", "rewards", "models", "backends", "state", "config", "distributed", "rollout",
              "eval", "loop", "report", "launch"},
}


def part_of(module: str) -> str:
    best = max((p for p in PARTS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{module} belongs to no part: add it to PARTS (and docs/architecture.md)"
    return PARTS[best]


def modules(root: str = "rlkit") -> dict[str, ast.Module]:
    out = {}
    for f in sorted((REPO / root).rglob("*.py")):
        name = ".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(f.read_text(), str(f))
    return out


def imports(tree: ast.Module) -> list[tuple[str, int]]:
    """(imported module, line) of every import, top-level or inside a function."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rlkit":  # `from rlkit import distributed` imports the submodule
                out += [(f"rlkit.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((node.module, node.lineno))
    return out


def edges() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for mod, tree in modules().items():
        for target, line in imports(tree):
            if target.split(".")[0] != "rlkit":
                continue
            a, b = part_of(mod), part_of(target)
            if a != b:
                found.setdefault((a, b), []).append(f"{mod}:{line} imports {target}")
    return found


def test_every_module_has_a_part_and_imports_only_allowed_parts():
    bad = [f"{a} -> {b}: {why[0]}" for (a, b), why in edges().items() if b not in ALLOWED[a]]
    assert not bad, "back-edges between parts:\n" + "\n".join(bad)


def test_the_allowed_part_graph_has_no_cycle():
    seen: dict[str, int] = {}

    def visit(p: str, path: tuple[str, ...]) -> None:
        assert p not in path, f"cycle: {' -> '.join(path + (p,))}"
        if seen.get(p):
            return
        for q in ALLOWED[p]:
            visit(q, path + (p,))
        seen[p] = 1

    for p in ALLOWED:
        visit(p, ())


def test_rlkit_does_not_import_the_benchmark():
    hits = [f"{mod}:{line}" for mod, tree in modules().items() for target, line in imports(tree)
            if target == "bench" or target.startswith("bench.")]
    assert not hits, hits


def test_no_module_assigns_into_another_modules_namespace():
    """`other_module.name = ...` or setattr(other_module, ...) (monkeypatching) in rlkit or bench."""
    bad = []
    for root in ("rlkit", "bench"):
        for mod, tree in modules(root).items():
            aliases = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                       for a in n.names}
            aliases |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                        for a in n.names if n.module == "rlkit" or (n.module or "").startswith("rlkit.")
                        and a.name[:1].islower() and a.name in _SUBMODULES}
            for node in ast.walk(tree):
                targets = node.targets if isinstance(node, ast.Assign) else []
                targets = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in aliases:
                        bad.append(f"{mod}:{node.lineno} {ast.unparse(t)} = ...")
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                        and isinstance(node.args[0], ast.Name) and node.args[0].id in aliases):
                    bad.append(f"{mod}:{node.lineno} {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


_SUBMODULES = {p.stem for p in (REPO / "rlkit").rglob("*.py")} | {p.name for p in (REPO / "rlkit").iterdir() if p.is_dir()}


def test_the_doc_names_every_part():
    doc = (REPO / "docs" / "architecture.md").read_text()
    missing = [p for p in ALLOWED if f"`{p}`" not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"
