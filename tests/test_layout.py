"""The layout holds: no import cycle among the project's modules, and no module or function too long
to read at once.  Both read the sources with ``ast`` (nothing is imported), in well under a second."""

import ast
import re
from pathlib import Path

import pytest

from loops import LOOPS

from tests.conftest import ROOT

PACKAGES = ("bench", "loops")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60

# Files still over a limit, each to be split and then taken off this list (a file listed here that
# is within the limits, or gone, fails the test: the list only shrinks).
WAIVED: set = set()
# Import cycles known and waived, each as the sorted tuple of its strongly connected modules, likewise
# only shrinking (none now: keep it so).
WAIVED_CYCLES: set = set()


def _modules() -> dict[str, Path]:
    """Every module of the project's packages by dotted name; a package's ``__init__`` is the package."""
    found = {}
    for package in PACKAGES:
        for path in sorted((Path(ROOT) / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules ``name`` imports, at its top level and inside its functions alike:
    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c of a package a.b: the nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def _path_through(graph: dict[str, set[str]], group: list[str]) -> str:
    """One cycle inside ``group``, written ``a -> b -> a``, for the failure message."""
    start, inside = group[0], set(group)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in inside)
        if nxt in seen:
            return " -> ".join(path[path.index(nxt):] + [nxt])
        path.append(nxt)
        seen.add(nxt)


def test_no_import_cycle_among_the_projects_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["bench.cell.main"] and "bench.meter" in graph["bench.cell.steps"]  # the walk sees imports at all
    groups = _cycles(graph)
    found = {tuple(group) for group in groups}
    unwaived = [_path_through(graph, group) for group in groups if tuple(group) not in WAIVED_CYCLES]
    assert not unwaived, "import cycles: " + "; ".join(unwaived)
    assert not WAIVED_CYCLES - found, f"waived cycles that are gone (take them off WAIVED_CYCLES): {WAIVED_CYCLES - found}"


def test_the_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path_through(graph, ["a", "b", "c"]) == "a -> b -> c -> a"


def _too_long() -> dict[str, list[str]]:
    """Per file under bench/: what is over a limit."""
    over = {}
    for path in sorted((Path(ROOT) / "bench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        source = path.read_text(encoding="utf-8")
        problems = []
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{rel}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
        if problems:
            over[rel] = problems
    return over


def test_no_module_or_function_in_bench_is_too_long():
    over = _too_long()
    unwaived = [line for rel, problems in over.items() if rel not in WAIVED for line in problems]
    assert not unwaived, "\n".join(unwaived)
    stale = sorted(rel for rel in WAIVED if rel not in over)
    assert not stale, f"within the limits now (or gone): take {', '.join(stale)} off WAIVED"


# -- the loops read as their libraries' own scripts ---------------------------------------------
# A line touches the harness when it names the meter, the harness's package, the loop contract's
# result, the native-defaults table, the fp16 skip watch or the loop's recorded facts.
HARNESS_WORDS = re.compile(r"\bmeter\b|_meter\b|\bbench\b|LoopResult|UnsupportedSetting|\bnative\.|ScaleWatch|"
                           r"\bscale\.|\bextra\w*|MeterCallback|\btimer\b")


def _code_lines(path: Path) -> list[str]:
    """The statements' lines of a file: no blank line, comment or docstring."""
    source = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return [line.strip() for number, line in enumerate(source.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and number not in docstrings]


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_loop_is_mostly_its_librarys_code(loop):
    lines = _code_lines(Path(ROOT) / (LOOPS[loop][0].replace(".", "/") + ".py"))
    harness = [line for line in lines if HARNESS_WORDS.search(line)]
    assert harness and len(harness) <= len(lines) / 4, \
        f"{loop}: {len(harness)} of {len(lines)} code lines touch the harness:\n" + "\n".join(harness)


def test_the_lightning_module_holds_what_a_lightning_user_writes():
    """The training step and the optimizers, plus the two hooks Lightning documents for overriding
    that the comparison corrects (clipping a fused AdamW's unscaled gradients; holding the schedule
    on a skipped fp16 step); the harness's hooks are a Callback attached from outside."""
    tree = ast.parse((Path(ROOT) / "loops/lightning_loop.py").read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    methods = {f.name for f in classes["MRPCModule"].body if isinstance(f, ast.FunctionDef)}
    assert methods == {"__init__", "training_step", "configure_optimizers", "configure_gradient_clipping",
                       "lr_scheduler_step"}
    assert [ast.unparse(b) for b in classes["MeterCallback"].bases] == ["pl.Callback"]


# -- the folders are the flow: config -> plan -> sweep -> cell -> record -> analysis -> report -------
BOUNDARIES = [
    ("bench.cell", "bench.sweep", "the cell never imports the sweep (it runs inside one, unaware of it)"),
    ("bench.analysis", "bench.report", "analysis never imports its rendering"),
    ("bench.report", "bench.cell", "the report reads records, never the cell that wrote them"),
    ("bench.report", "bench.meter", "the report reads records, never the meter that measured them"),
    ("bench.analysis", "bench.cell", "analysis reads records, never the cell that wrote them"),
    ("bench.analysis", "bench.meter", "analysis reads records, never the meter that measured them"),
    ("bench.records", "bench.cell", "the records' words are their own"),
]


def test_the_packages_keep_their_boundaries():
    modules = _modules()
    crossings = []
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            for inside, forbidden, why in BOUNDARIES:
                if (name == inside or name.startswith(inside + ".")) and \
                        (target == forbidden or target.startswith(forbidden + ".")):
                    crossings.append(f"{name} imports {target}: {why}")
    assert not crossings, "\n".join(crossings)


def test_the_top_of_bench_holds_few_modules_and_no_name_means_two_things():
    top = sorted(p.name for p in (Path(ROOT) / "bench").glob("*.py"))
    assert len(top) <= 11, top
    # One name, one thing: a module's name appears once across bench/, except where one concept's
    # analysis and its rendering (or its command) share it.
    shared_ok = {"__init__", "__main__", "compare", "explain", "quality", "parity", "gaps", "wall", "report", "run",
                 "inspect", "env", "export", "table", "finetune"}
    seen: dict[str, list[str]] = {}
    for path in (Path(ROOT) / "bench").rglob("*.py"):
        seen.setdefault(path.stem, []).append(path.relative_to(ROOT).as_posix())
    twice = {stem: paths for stem, paths in seen.items() if len(paths) > 1 and stem not in shared_ok}
    assert not twice, twice
