"""A small smoke run of bench/orders.py, so the benchmark keeps working."""

import subprocess
import sys
from pathlib import Path

import pytest

from users.tests.factories import UserFactory

BENCH = Path(__file__).resolve().parents[2] / "bench" / "orders.py"


@pytest.mark.integration
@pytest.mark.timeout(300)  # the benchmark itself may take 180 s
def test_the_order_benchmark_runs_and_finds_no_invariant_violation(integration, live_server):
    UserFactory(username="bench-staff", is_staff=True, password="bench-staff-pass")

    result = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--url", live_server.url),
            *("--users", "3", "--orders", "60", "--concurrency", "8"),
            *("--staff-user", "bench-staff", "--staff-password", "bench-staff-pass"),
            *("--timeout", "60"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders: 60 from 3 users, concurrency 8" in result.stdout
    assert "invariant violations: 0" in result.stdout
