"""Figure: customers import throughput and peak memory (issue 2).

    python benchmarks/import_customers.py 100000     # rows/s with phone + email validation
    python benchmarks/import_customers.py 1000000    # peak memory for a million rows

Writes a CSV of N customers (NL mobile numbers, emails over a few domains, locale, time
zone, opted_in and three attributes) to a temporary workspace, imports it through the real
CLI in this process, and prints wall time, CPU time, rows/s and peak RSS. CPU time is the
fairer figure on a busy machine.
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from outreach.cli import app


def write_csv(path: Path, n: int) -> None:
    rnd = random.Random(1)
    domains = ["gmail.com", "example.com", "outlook.com", "acme.nl", "yahoo.fr", "web.de"]
    zones = ["Europe/Amsterdam", "Europe/Brussels", "Europe/Paris", "America/New_York"]
    locales = ["nl-NL", "nl-BE", "fr-FR", "en-US", "de"]
    with path.open("w", encoding="utf-8") as f:
        f.write("id,name,email,phone,preferred_channel,locale,timezone,opted_in,plan,age,zip\n")
        for i in range(n):
            phone = f"06{rnd.choice('12345')}{rnd.randint(1_000_000, 9_999_999)}"
            f.write(
                f"C{i:07d},Customer {i},user{i}@{domains[i % 6]},{phone},"
                f"{'sms' if i % 2 else 'email'},{locales[i % 5]},{zones[i % 4]},sms;email,"
                f"{'pro' if i % 3 else 'free'},{20 + i % 60},{i % 10000:04d}\n"
            )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv_file = root / "customers.csv"
        write_csv(csv_file, n)
        assert runner.invoke(app, ["init", str(root / "ws")]).exit_code == 0
        wall, cpu = time.perf_counter(), time.process_time()
        result = runner.invoke(app, ["-w", str(root / "ws"), "customers", "import", str(csv_file)])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert result.exit_code == 0, result.output
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{n} rows: {wall:.1f} s wall ({n / wall:,.0f} rows/s), {cpu:.1f} s CPU "
        f"({n / cpu:,.0f} rows/s), peak RSS {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
