"""edgekd's OpenVINO bench against OpenVINO's own benchmark_app, FP32 and INT8, same settings, alternating
passes; prints the ratio per model (goal: within 10 %). The OpenVINO half of bench_matrix.py:

    nice -n 0 .venv/bin/python benchmarks/bench_vs_benchmark_app.py --passes 3 --seconds 3

Writes benchmarks/results/bench_vs_benchmark_app.json (all bench_matrix.py options apply).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_matrix import main  # noqa: E402

if __name__ == "__main__":
    if "--out" not in sys.argv:
        sys.argv += ["--out", str(Path(__file__).parent / "results" / "bench_vs_benchmark_app.json")]
    sys.argv.append("--only-openvino")
    main()
