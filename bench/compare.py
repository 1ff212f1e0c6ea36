#!/usr/bin/env python3
"""convgen against its peers on the benchmark suite, measured in one run, as ratios.

  pip install numpy onnx onnxruntime          # torch and openvino are used when installed
  python3 bench/compare.py [--only dw3_s1_c32_112,mobilenet_v1] [--engines ort,torch,torch_cl,ov]

Runs `cargo bench --bench suite -- --json` (convgen's JIT, single thread) and bench/peers.py
(the peers, single thread) one after the other, then prints a markdown table: medians in ms
(GFLOP/s), the best peer, and convgen's speed-up over it (best peer's median / convgen's median;
above 1 means convgen is faster). The machines are shared and noisy: compare ratios from one run.
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
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]

    convgen = json_lines(["cargo", "bench", "--quiet", "--bench", "suite", "--", "--json", *only])
    peer_command = [sys.executable, os.path.join("bench", "peers.py"), "--engines", args.engines]
    if only:
        peer_command += ["--only", ",".join(only)]
    peers = json_lines(peer_command)

    engines = [engine for engine in ["torch", "torch_cl", "ort", "ov"] if any(row["engine"] == engine for row in peers)]
    by_model = {}
    for row in peers:
        by_model.setdefault(row["model"], {})[row["engine"]] = row
    print("| model | convgen jit | " + " | ".join(engines) + " | best peer | speed-up |")
    print("|---|---|" + "---|" * len(engines) + "---|---|")
    for row in convgen:
        model = row["model"]
        peer_rows = by_model.get(model, {})
        cells = [f'{peer_rows[e]["ms"]:.3f} ({peer_rows[e]["gflops"]:.0f})' if e in peer_rows else "–" for e in engines]
        if peer_rows:
            best = min(peer_rows.values(), key=lambda r: r["ms"])
            best_cell = f'{best["ms"]:.3f} {best["engine"]}'
            ratio = f'**{best["ms"] / row["ms"]:.2f}x**'
        else:
            best_cell, ratio = "–", "–"
        print(f'| {model} | {row["ms"]:.3f} ({row["gflops"]:.0f}) | ' + " | ".join(cells) + f" | {best_cell} | {ratio} |")


if __name__ == "__main__":
    main()
