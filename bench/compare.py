#!/usr/bin/env python3
"""convgen against its peers on the benchmark suite, measured in one run, as ratios.

  pip install numpy onnx onnxruntime          # torch and openvino are used when installed
  python3 bench/compare.py [--only dw3_s1_c32_112,mobilenet_v1] [--engines ort,torch,torch_cl,ov] [--threads 2]

Runs `cargo bench --bench suite -- --json` (convgen's JIT and `conv!` macro, single thread) and
bench/peers.py (the peers, single thread) one after the other, then prints a markdown table:
medians in ms (GFLOP/s), the best peer, and each convgen backend's speed-up over it (best peer's
median / convgen's median; above 1 means convgen is faster). With --threads N the JIT also runs on
N threads, and the table adds that time and its speed-up over the JIT's single thread. The machines
are shared and noisy: compare ratios from one run.
"""
import argparse, json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def json_lines(command, **kwargs):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--engines", default="torch,torch_cl,ort,ov", help="peers to run (those installed)")
    parser.add_argument("--threads", type=int, default=1, help="also run the JIT on this many threads")
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]

    threads = ["--threads", str(args.threads)] if args.threads > 1 else []
    convgen = json_lines(["cargo", "bench", "--quiet", "--bench", "suite", "--", "--json", *threads, *only])
    peer_command = [sys.executable, os.path.join("bench", "peers.py"), "--engines", args.engines]
    if only:
        peer_command += ["--only", ",".join(only)]
    peers = json_lines(peer_command)

    engines = [engine for engine in ["torch", "torch_cl", "ort", "ov"] if any(row["engine"] == engine for row in peers)]
    by_model = {}
    for row in peers:
        by_model.setdefault(row["model"], {})[row["engine"]] = row
    ours = {}
    for row in convgen:
        threaded = row["backend"] == "jit" and row["threads"] > 1
        ours.setdefault(row["model"], {})[f'jit {row["threads"]}t' if threaded else row["backend"]] = row
    backends = [backend for backend in ["jit", "macro"] if any(backend in rows for rows in ours.values())]
    parallel = f"jit {args.threads}t" if args.threads > 1 else None
    print("| model | " + " | ".join(f"convgen {b}" for b in backends) + " | " + " | ".join(engines)
          + " | best peer | " + " | ".join(f"speed-up {b}" for b in backends)
          + (f" | convgen {parallel} | {parallel} / jit |" if parallel else " |"))
    print("|---|" + "---|" * (2 * len(backends) + len(engines) + 1 + (2 if parallel else 0)))
    cell = lambda row: f'{row["ms"]:.3f} ({row["gflops"]:.0f})' if row else "–"
    for model, rows in ours.items():
        peer_rows = by_model.get(model, {})
        best = min(peer_rows.values(), key=lambda r: r["ms"]) if peer_rows else None
        ratios = [f'**{best["ms"] / rows[b]["ms"]:.2f}x**' if best and b in rows else "–" for b in backends]
        print(f"| {model} | " + " | ".join(cell(rows.get(b)) for b in backends) + " | "
              + " | ".join(cell(peer_rows.get(e)) for e in engines) + " | "
              + (f'{best["ms"]:.3f} {best["engine"]}' if best else "–") + " | " + " | ".join(ratios) + " |"
              + (f' {cell(rows.get(parallel))} | {rows["jit"]["ms"] / rows[parallel]["ms"]:.2f}x |'
                 if parallel and parallel in rows and "jit" in rows else (" – | – |" if parallel else "")))

if __name__ == "__main__":
    main()
