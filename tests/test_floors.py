"""The modules sit on floors (docs/architecture.md) and import only downwards: read from
the source (every `senet` import, top level or inside a function), no module is run."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "senet"

# module -> modules of senet it must never import, however lazily
NEVER = {
    "senet.inference": {"senet.predict", "senet.export", "senet.metrics", "senet.train"},
    "senet.metrics": {"senet.predict", "senet.export", "senet.train", "senet.evaluation"},
    "senet.evaluation": {"senet.predict", "senet.export", "senet.train"},
    "senet.export": {"senet.predict", "senet.metrics", "senet.train", "senet.runtime"},
    # the runtime a classifier runs in stands on export; predict and serve stand on it
    "senet.runtime": {"senet.predict", "senet.serve", "senet.cli", "senet.train"},
    # the web side of a model stands on the jobs below it, never on the command line
    "senet.serve": {"senet.cli", "senet.train", "senet.ablate", "senet.demo"},
    "senet.runs": {"senet.train", "senet.metrics", "senet.predict", "senet.export", "senet.tasks"},
    # a task stands on data, models, metrics and the report; the run machinery stands on it
    "senet.tasks": {"senet.train", "senet.runs", "senet.cli", "senet.ablate", "senet.demo"},
    "senet.distributed": {"senet.tasks", "senet.train"},
    # the training floor, bottom up: run_start <- fitting <- cluster <- train
    "senet.run_start": {"senet.fitting", "senet.cluster", "senet.train"},
    "senet.fitting": {"senet.cluster", "senet.train"},
    "senet.cluster": {"senet.train"},
    "senet.data": {"senet.train", "senet.tasks", "senet.runs"},
    "senet.config": {"senet.train", "senet.cli"},
    "senet.names": {"senet.train", "senet.cli"},
    "senet.errors": {"senet"},  # floor 0: nothing of senet
    # NumPy and SciPy only: metrics, sliding windows, colours
    "senet.segmentation": {
        "senet.layers",
        "senet.models",
        "senet.data",
        "senet.explain",
        "senet.tasks",
        "senet.inference",
        "senet.train",
    },
    "senet.explain": {"senet.segment", "senet.predict", "senet.tasks", "senet.train"},
    "senet.segment": {"senet.train", "senet.runs", "senet.export", "senet.evaluation"},
}


def _senet_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name == "senet" or name.startswith("senet.")}


@pytest.mark.parametrize("module", sorted(NEVER))
def test_a_module_never_imports_a_floor_above_it(module):
    path = SRC.joinpath(*module.split(".")[1:])
    files = sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    imported = set().union(*(_senet_imports(file) for file in files))
    banned = NEVER[module]
    if banned == {"senet"}:
        assert not imported, imported
        return
    assert not {
        name for name in imported if any(name == b or name.startswith(b + ".") for b in banned)
    }, imported


def test_cli_help_modules_import_no_keras():
    """`senet --help` reads the option and name tables: they stay free of Keras."""
    for module in (
        "config",
        "names",
        "checks",
        "errors",
        "plugins",
        "tasks/__init__",
        "tasks/base",
        "runtime",
    ):
        imports = {
            node.names[0].name if isinstance(node, ast.Import) else node.module
            for node in ast.parse((SRC / f"{module}.py").read_text()).body
            if isinstance(node, ast.Import | ast.ImportFrom)
        }
        assert not {
            name for name in imports if name and name.split(".")[0] in {"keras", "tensorflow"}
        }
