#!/usr/bin/env python3
"""convgen against its peers on the benchmark suite, measured in one run, as ratios.

  pip install numpy onnx onnxruntime          # torch and openvino are used when installed
  python3 bench/compare.py [--only dw3_s1_c32_112,mobilenet_v1] [--engines ort,torch,torch_cl,ov]
                           [--rounds 3] [--threads 2]

For each round and each model, runs `cargo bench --bench suite -- --json MODEL` (convgen's JIT and
`conv!` macro, single thread) and then bench/peers.py on the same model (the peers, single
thread), so that convgen and its peers are measured seconds apart. Then prints a markdown table:
per model the medians over the rounds in ms (GFLOP/s), the best peer, and each convgen backend's
speed-up over it — the median of the rounds' ratios (best peer's median / convgen's median; above
1 means convgen is faster), with their range when there are several rounds. With --threads N the
JIT also runs on N threads, and the table adds that time and its speed-up over the JIT's single
thread. The machines are shared and noisy: compare ratios from one run, never absolute times from
different runs.
"""
import argparse, glob, json, os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = ["torch", "torch_cl", "ort", "ov"]


def json_lines(command, **kwargs):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def suite_models():
    """The suite's model names: every benches/suite/*.conv, then MobileNetV1."""
    files = sorted(glob.glob(os.path.join(ROOT, "benches", "suite", "*.conv")))
    return [os.path.splitext(os.path.basename(path))[0] for path in files] + ["mobilenet_v1"]


def measure(model, threads, engines):
    """One round of one model: convgen's rows by backend ("jit", "macro", "jit Nt"), the peers' by engine."""
    convgen = json_lines(["cargo", "bench", "--quiet", "--bench", "suite", "--", "--json", *threads, model])
    ours = {}
    for row in convgen:
        if row["model"] == model:
            threaded = row["backend"] == "jit" and row["threads"] > 1
            ours[f'jit {row["threads"]}t' if threaded else row["backend"]] = row
    peer_rows = json_lines([sys.executable, os.path.join("bench", "peers.py"), "--engines", engines, "--only", model])
    return ours, {row["engine"]: row for row in peer_rows if row["model"] == model}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--engines", default="torch,torch_cl,ort,ov", help="peers to run (those installed)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the models (ratios: their median)")
    parser.add_argument("--threads", type=int, default=1, help="also run the JIT on this many threads")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    models = suite_models()
    only = [name for name in args.only.split(",") if name]
    unknown = [name for name in only if name not in models]
    if unknown:
        sys.exit(f"not in the suite: {', '.join(unknown)} (the suite: {', '.join(models)})")
    models = [model for model in models if not only or model in only]
    threads = ["--threads", str(args.threads)] if args.threads > 1 else []
    parallel = f"jit {args.threads}t" if args.threads > 1 else None

    # rounds[model] = [(ours, peers) per round]
    rounds = {model: [] for model in models}
    for round_index in range(args.rounds):
        for model in models:
            print(f"round {round_index + 1}/{args.rounds}: {model}", file=sys.stderr)
            rounds[model].append(measure(model, threads, args.engines))

    engines = [e for e in ENGINES if any(e in peers for runs in rounds.values() for _, peers in runs)]
    backends = [b for b in ["jit", "macro"] if any(b in ours for runs in rounds.values() for ours, _ in runs)]
    print("| model | " + " | ".join(f"convgen {b}" for b in backends) + " | " + " | ".join(engines)
          + " | best peer | " + " | ".join(f"speed-up {b}" for b in backends)
          + (f" | convgen {parallel} | {parallel} / jit |" if parallel else " |"))
    print("|---|" + "---|" * (2 * len(backends) + len(engines) + 1 + (2 if parallel else 0)))

    def median_cell(runs, pick):
        rows = [row for row in map(pick, runs) if row]
        if not rows:
            return "–"
        return f'{statistics.median(r["ms"] for r in rows):.3f} ({statistics.median(r["gflops"] for r in rows):.0f})'

    def ratio_cell(values, bold=True):
        if not values:
            return "–"
        text = f"{statistics.median(values):.2f}x"
        text = f"**{text}**" if bold else text
        return text + (f" ({min(values):.2f}–{max(values):.2f})" if len(values) > 1 else "")

    for model, runs in rounds.items():
        best_of = lambda peers: min(peers.values(), key=lambda r: r["ms"]) if peers else None
        bests = [best_of(peers) for _, peers in runs]
        best_engines = sorted({best["engine"] for best in bests if best})
        best_cell = (f'{statistics.median(b["ms"] for b in bests if b):.3f} {"/".join(best_engines)}'
                     if best_engines else "–")
        ratios = [ratio_cell([best["ms"] / ours[b]["ms"] for (ours, _), best in zip(runs, bests) if best and b in ours])
                  for b in backends]
        line = (f"| {model} | " + " | ".join(median_cell(runs, lambda run, b=b: run[0].get(b)) for b in backends)
                + " | " + " | ".join(median_cell(runs, lambda run, e=e: run[1].get(e)) for e in engines)
                + f" | {best_cell} | " + " | ".join(ratios) + " |")
        if parallel:
            speedups = [ours["jit"]["ms"] / ours[parallel]["ms"] for ours, _ in runs if "jit" in ours and parallel in ours]
            line += f" {median_cell(runs, lambda run: run[0].get(parallel))} | {ratio_cell(speedups, bold=False)} |"
        print(line)


if __name__ == "__main__":
    main()
