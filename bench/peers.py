#!/usr/bin/env python3
# Vendored from the project's shared benchmark kit (shared/bench/peers.py) so that bench/compare.py
# works from a plain clone; keep the two in step.
"""Peer baselines for convgen's benchmark suite: ONNX Runtime (MLAS), and PyTorch (oneDNN) and
OpenVINO (oneDNN) where installed. f32, batch 1. One JSON object per line:
{"model", "engine", "threads", "ms", "gflops"}  (ms = median; gflops counts 2 FLOPs per MAC).

  pip install numpy onnx onnxruntime        # torch / openvino optional
  python3 peers.py [--threads N] [--only a,b] [--engines torch,torch_cl,ort,ov]
"""
import argparse, json, statistics, time
import numpy as np

# A model is a chain of conv layers: (out, kernel, stride, pad, dilation, groups, act).
def conv(out, k, s=1, p=0, d=1, g=1, act=None):
    return (out, k, s, p, d, g, act)

def mobilenet_v1():
    layers = [conv(32, 3, 2, 1, act="relu")]
    c = 32
    for out, s in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
        layers += [conv(c, 3, s, 1, g=c, act="relu"), conv(out, 1, act="relu")]
        c = out
    return layers

SUITE = {
    "dw3_s1_c32_112":   ([1, 32, 112, 112], [conv(32, 3, 1, 1, g=32)]),
    "dw3_s2_c96_112":   ([1, 96, 112, 112], [conv(96, 3, 2, 1, g=96)]),
    "dw3_s1_c144_56":   ([1, 144, 56, 56], [conv(144, 3, 1, 1, g=144)]),
    "dw3_s1_c384_14":   ([1, 384, 14, 14], [conv(384, 3, 1, 1, g=384)]),
    "dw3_s1_c960_7":    ([1, 960, 7, 7], [conv(960, 3, 1, 1, g=960)]),
    "dw5_s1_c240_28":   ([1, 240, 28, 28], [conv(240, 5, 1, 2, g=240)]),
    "dw3_d2_c64_56":    ([1, 64, 56, 56], [conv(64, 3, 1, 2, 2, g=64)]),
    "pw_32to16_112":    ([1, 32, 112, 112], [conv(16, 1)]),
    "pw_144to24_56":    ([1, 144, 56, 56], [conv(24, 1)]),
    "pw_64to64_56":     ([1, 64, 56, 56], [conv(64, 1)]),
    "pw_384to64_14":    ([1, 384, 14, 14], [conv(64, 1)]),
    "pw_960to320_7":    ([1, 960, 7, 7], [conv(320, 1)]),
    "g3_c128_g32_56":   ([1, 128, 56, 56], [conv(128, 3, 1, 1, g=32)]),
    "g3_c256_g2_28":    ([1, 256, 28, 28], [conv(256, 3, 1, 1, g=2)]),
    "std3_64to64_56":   ([1, 64, 56, 56], [conv(64, 3, 1, 1)]),
    "dw1d_k31_c256_l1000": ([1, 256, 1000], [conv(256, 31, 1, 15, g=256)]),
    "dw3d_k3_c32_16x56": ([1, 32, 16, 56, 56], [conv(32, 3, 1, 1, g=32)]),
    "relu6_dw3_c64_56": ([1, 64, 56, 56], [conv(64, 3, 1, 1, g=64, act="relu6")]),
    "sep_c64_56":       ([1, 64, 56, 56], [conv(64, 3, 1, 1, g=64, act="relu6"), conv(128, 1, act="relu6")]),
    "mobilenet_v1":     ([1, 3, 224, 224], mobilenet_v1()),
}

def shapes_and_flops(inp, layers):
    shape, total = list(inp), 0
    for out, k, s, p, d, g, _ in layers:
        n, c, *sp = shape
        osp = [(x + 2 * p - d * (k - 1) - 1) // s + 1 for x in sp]
        total += 2 * n * out * int(np.prod(osp)) * (c // g) * k ** len(sp)
        shape = [n, out, *osp]
    return total

def make_params(inp, layers, rng):
    params, c = [], inp[1]
    for out, k, s, p, d, g, _ in layers:
        w = (rng.uniform(-1, 1, [out, c // g] + [k] * (len(inp) - 2)) / np.sqrt(c // g * k ** (len(inp) - 2))).astype(np.float32)
        params.append((w, rng.uniform(-0.1, 0.1, [out]).astype(np.float32)))
        c = out
    return params

def onnx_model(inp, layers, params):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    r, nodes, inits, cur = len(inp) - 2, [], [], "x"
    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(np.array(6, np.float32), "six")]
    for i, ((out, k, s, p, d, g, act), (w, b)) in enumerate(zip(layers, params)):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k] * r,
                                      strides=[s] * r, pads=[p] * (2 * r), dilations=[d] * r, group=g))
        cur = f"c{i}"
        if act == "relu":
            nodes.append(helper.make_node("Relu", [cur], [f"a{i}"])); cur = f"a{i}"
        elif act == "relu6":
            nodes.append(helper.make_node("Clip", [cur, "zero", "six"], [f"a{i}"])); cur = f"a{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

def median_ms(fn, min_runs=20, min_seconds=0.3):
    for _ in range(3):
        fn()
    times, deadline = [], time.perf_counter() + min_seconds
    while len(times) < min_runs or (time.perf_counter() < deadline and len(times) < 2000):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3

def torch_runner(inp, layers, params, x, channels_last):
    import torch, torch.nn.functional as F
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(inp)]
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(len(inp))
    if channels_last and fmt is None:
        return None
    prep = (lambda t: t.contiguous(memory_format=fmt)) if channels_last else (lambda t: t)
    tp = [(prep(torch.from_numpy(w)), torch.from_numpy(b)) for w, b in params]
    tx = prep(torch.from_numpy(x))
    def run():
        with torch.no_grad():
            y = tx
            for (out, k, s, p, d, g, act), (w, b) in zip(layers, tp):
                y = conv(y, w, b, stride=s, padding=p, dilation=d, groups=g)
                if act == "relu": y = torch.relu(y)
                elif act == "relu6": y = torch.clamp(y, 0, 6)
            return y
    return run

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--engines", default="torch,torch_cl,ort,ov")
    a = ap.parse_args()
    engines = set(a.engines.split(","))
    only = set(a.only.split(",")) if a.only else None
    try:
        import torch; torch.set_num_threads(a.threads)
    except ImportError:
        engines -= {"torch", "torch_cl"}
    try:
        import openvino; core = openvino.Core()
    except ImportError:
        engines.discard("ov")
    rng = np.random.default_rng(0)
    for name, (inp, layers) in SUITE.items():
        if only and name not in only:
            continue
        params, flops = make_params(inp, layers, rng), shapes_and_flops(inp, layers)
        x = rng.uniform(-1, 1, inp).astype(np.float32)
        results = {}
        for cl, eng in [(False, "torch"), (True, "torch_cl")]:
            if eng in engines:
                run = torch_runner(inp, layers, params, x, cl)
                if run: results[eng] = median_ms(run)
        if engines & {"ort", "ov"}:
            model = onnx_model(inp, layers, params)
            if "ort" in engines:
                import onnxruntime as ort
                so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
                sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
                results["ort"] = median_ms(lambda: sess.run(None, {"x": x}))
            if "ov" in engines:
                compiled = core.compile_model(core.read_model(model, b""), "CPU", {"INFERENCE_NUM_THREADS": a.threads,
                                              "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
                req = compiled.create_infer_request()
                results["ov"] = median_ms(lambda: req.infer({0: x}))
        for eng, ms in results.items():
            print(json.dumps({"model": name, "engine": eng, "threads": a.threads, "ms": round(ms, 4),
                              "gflops": round(flops / ms / 1e6, 2)}), flush=True)

if __name__ == "__main__":
    main()
