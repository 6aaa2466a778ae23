"""docker-compose.yml's defaults that cannot be run here (no Docker daemon): no demo users
unless asked for, and nothing published beyond loopback unless asked for."""

import subprocess
from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())


def migrate_runs(seed_demo: str | None) -> str:
    """What the `migrate` service's command runs, with `python` echoed instead of run."""
    command = COMPOSE["services"]["migrate"]["command"]
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace("$$", "$")  # compose's escape of a literal $
    env = {"PATH": "/usr/bin:/bin", **({"SEED_DEMO": seed_demo} if seed_demo is not None else {})}
    result = subprocess.run(
        ["sh", "-c", 'python() { echo python "$@"; }\n' + script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_compose_seeds_demo_users_only_when_seed_demo_is_1():
    assert migrate_runs(None) == "python manage.py migrate --noinput\n"
    assert migrate_runs("0") == "python manage.py migrate --noinput\n"
    assert migrate_runs("1") == ("python manage.py migrate --noinput\npython manage.py seed_demo\n")
    assert COMPOSE["x-app-environment"]["SEED_DEMO"] == "${SEED_DEMO:-0}"


def test_compose_publishes_every_port_on_loopback_by_default():
    published = {name: service.get("ports", []) for name, service in COMPOSE["services"].items()}
    assert published["web"] == ["${PUBLISH_ADDRESS:-127.0.0.1}:8000:8000"]
    assert published["ws"] == ["${PUBLISH_ADDRESS:-127.0.0.1}:8001:8001"]
    assert published["flower"] == ["127.0.0.1:5555:5555"]
    others = {
        name: ports for name, ports in published.items() if name not in {"web", "ws", "flower"}
    }
    assert others == {name: [] for name in ("db", "redis", "migrate", "worker", "beat")}
