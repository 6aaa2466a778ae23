"""Layering, checked statically (ast) over the source tree: services import no tasks module, no
app names another app's task in a string, and the trading services stay small modules."""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Test code may drive any app's tasks (a harness counts a worker's tasks by name); the
# layering is about the product's own modules.
TEST_PARTS = {"tests", "testing"}
TEST_FILES = {"conftest.py", "test_settings.py"}
# The beat schedule is where the project names each app's periodic tasks.
MAY_NAME_ANY_TASK = {"stockflow/settings.py"}
MAX_SERVICE_LINES = 300
TASK_NAME = re.compile(r"\b([A-Za-z_]\w*)\.tasks\.")
TASKS_MODULE = re.compile(r"(?:^|\.)tasks(?:\.|$)")


def packages(root: Path) -> list[str]:
    """The apps (a directory with apps.py) and the project package (the one with settings.py)."""
    return sorted(
        path.name
        for path in root.iterdir()
        if path.is_dir()
        and (path / "__init__.py").exists()
        and ((path / "apps.py").exists() or (path / "settings.py").exists())
    )


def product_modules(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every product module of the apps and the project."""
    for package in packages(root):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if TEST_PARTS & set(relative.parts[:-1]) or path.name in TEST_FILES:
                continue
            yield relative.as_posix(), path


def is_service_module(relative: str) -> bool:
    parts = relative.split("/")
    return parts[-1] == "services.py" or "services" in parts[:-1]


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes: prose, not a name the code uses."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def tasks_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for each import of a tasks module, absolute or relative, at any depth:
    `import x.tasks`, `from x.tasks import y`, `from x import tasks`, `from .tasks import y`,
    `from .. import tasks`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if TASKS_MODULE.search(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and TASKS_MODULE.search(node.module):
                yield node.lineno, f"from {module} import ..."
            for alias in node.names:
                if alias.name == "tasks":
                    yield node.lineno, f"from {module} import tasks"


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# --- the checks: each returns "file:line what" per offence -----------------------------------


def services_importing_tasks(root: Path) -> list[str]:
    """Service modules (a services.py, or any module of a services package, the trading
    services included) that import a tasks module or name one in a string (import_module,
    send_task): services record events; what follows is a subscriber's."""
    offences = []
    for relative, path in product_modules(root):
        if not is_service_module(relative):
            continue
        tree = parse(path)
        offences += [f"{relative}:{line} {what}" for line, what in tasks_imports(tree)]
        offences += [
            f"{relative}:{line} names {value!r}"
            for line, value in strings(tree)
            if TASKS_MODULE.search(value) and "." in value
        ]
    return offences


def strings_naming_another_apps_task(root: Path) -> list[str]:
    apps = set(packages(root))
    offences = []
    for relative, path in product_modules(root):
        if relative in MAY_NAME_ANY_TASK:
            continue
        own = relative.split("/")[0]
        for line, value in strings(parse(path)):
            named = {app for app in TASK_NAME.findall(value) if app in apps and app != own}
            offences += [f"{relative}:{line} names {app}.tasks in {value!r}" for app in named]
    return offences


def long_trading_services(root: Path) -> list[str]:
    offences = []
    for path in sorted((root / "transactions" / "services").glob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_SERVICE_LINES:
            relative = path.relative_to(root).as_posix()
            offences.append(f"{relative} has {lines} lines (at most {MAX_SERVICE_LINES})")
    return offences


# --- on this repository ---------------------------------------------------------------------


def test_the_tree_has_the_apps_and_the_trading_services_package_these_checks_read():
    assert {"events", "stockflow", "stocks", "transactions", "users"} <= set(packages(ROOT))
    relatives = {relative for relative, _ in product_modules(ROOT)}
    assert {"transactions/services/settlement.py", "stocks/services.py"} <= relatives
    assert "events/services.py" in relatives
    assert not any("/tests/" in relative for relative in relatives)


def test_no_service_module_imports_a_tasks_module():
    assert services_importing_tasks(ROOT) == []


def test_no_app_names_another_apps_task_in_a_string_but_the_beat_schedule():
    assert strings_naming_another_apps_task(ROOT) == []


def test_the_beat_schedule_is_the_one_place_that_names_other_apps_tasks():
    tree = parse(ROOT / "stockflow" / "settings.py")
    named = {m for _, value in strings(tree) for m in TASK_NAME.findall(value)}
    assert {"events", "transactions"} <= named


def test_no_trading_service_module_is_over_300_lines():
    assert long_trading_services(ROOT) == []


# --- the checks find what they look for (a fake tree) ----------------------------------------


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def tree(tmp_path):
    for package in ("shop", "billing"):
        write(tmp_path, f"{package}/__init__.py", "")
        write(tmp_path, f"{package}/apps.py", "")
    write(tmp_path, "stockflow/__init__.py", "")
    write(tmp_path, "stockflow/settings.py", "BEAT = {'t': {'task': 'shop.tasks.sweep'}}\n")
    write(tmp_path, "stockflow/celery.py", "T = 'shop.tasks.sweep'\n")
    write(tmp_path, "transactions/__init__.py", "")
    write(tmp_path, "transactions/apps.py", "")
    write(tmp_path, "transactions/services/__init__.py", "")
    return tmp_path


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("from ..tasks import request_settlement\n", "from ..tasks import ..."),
        ("from .tasks import x\n", "from .tasks import ..."),
        ("from .. import tasks\n", "from .. import tasks"),
        ("import transactions.tasks\n", "import transactions.tasks"),
        ("def f():\n    from billing.tasks import charge\n", "from billing.tasks import ..."),
    ],
)
def test_a_trading_service_importing_a_tasks_module_is_reported_with_its_file(tree, source, what):
    write(tree, "transactions/services/settlement.py", '"""Settles."""\n' + source)
    line = source.count("\n")
    assert services_importing_tasks(tree) == [
        f"transactions/services/settlement.py:{line + 1} {what}"
    ]


def test_any_apps_services_module_or_package_importing_tasks_is_reported(tree):
    write(tree, "shop/services.py", "from shop import tasks\n")
    write(tree, "billing/services/charges.py", "from billing.tasks import charge\n")
    write(tree, "billing/services/__init__.py", "")
    write(tree, "billing/views.py", "from billing.tasks import charge\n")  # not a service
    write(tree, "shop/tests/test_services.py", "from shop import tasks\n")  # test code

    assert services_importing_tasks(tree) == [
        "billing/services/charges.py:1 from billing.tasks import ...",
        "shop/services.py:1 from shop import tasks",
    ]


def test_a_service_naming_a_task_in_a_string_is_reported(tree):
    write(
        tree,
        "shop/services.py",
        '"""Docstrings may say shop.tasks.x."""\nfrom celery import current_app\n'
        "current_app.send_task('shop.tasks.refund')\n",
    )
    assert services_importing_tasks(tree) == ["shop/services.py:3 names 'shop.tasks.refund'"]


def test_a_string_naming_another_apps_task_is_reported_but_not_its_own_nor_the_settings(tree):
    write(tree, "shop/signals.py", "TASK = 'billing.tasks.charge'\nOWN = 'shop.tasks.sweep'\n")
    write(tree, "billing/tests/test_x.py", "T = 'shop.tasks.sweep'\n")

    offences = strings_naming_another_apps_task(tree)

    assert offences == [
        "shop/signals.py:1 names billing.tasks in 'billing.tasks.charge'",
        "stockflow/celery.py:1 names shop.tasks in 'shop.tasks.sweep'",  # settings.py only
    ]


def test_a_trading_service_over_300_lines_is_reported(tree):
    write(tree, "transactions/services/short.py", "x = 1\n" * 300)
    write(tree, "transactions/services/long.py", "x = 1\n" * 301)

    assert long_trading_services(tree) == [
        "transactions/services/long.py has 301 lines (at most 300)"
    ]
