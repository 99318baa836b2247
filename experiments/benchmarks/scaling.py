"""Throughput against the number of devices and the batch size (``jax.sharding`` meshes).

Three workloads on the 32-D many-well target (FAB's ``ManyWell``) with a RealNVP flow:

- flow sampling + ``log_prob`` + energies, ``BoltzmannGenerator.sample_and_log_weights(key, B,
  mesh=...)``: samples per second;
- training, ``physgen.fit(..., ReverseKL(target, B), mesh=...)``: optimiser steps per second
  (each step draws and differentiates ``B`` flow samples);
- HMC (fixed step size), ``run_mcmc(..., num_chains=B, mesh=...)``: chain-steps per second.

Every device count runs in its own process (on CPU the devices are forced host devices,
``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on an accelerator the real devices).
Each timing excludes compilation (one untimed call first) and is repeated; the throughput is
the mean over repeats with its standard error. Forced host devices share the machine's CPU
cores, so on CPU more devices than cores cannot be faster; the numbers there measure the
overhead of sharding, not a speed-up.

Writes results.json and scaling.{png,pdf} to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = ("sample_and_log_prob", "training", "hmc")
UNITS = {
    "sample_and_log_prob": "samples/s",
    "training": "steps/s",
    "hmc": "chain-steps/s",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("results/benchmarks/scaling"), help="output folder"
    )
    p.add_argument("--quick", action="store_true", help="tiny run for tests (seconds)")
    p.add_argument(
        "--devices",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="device counts, each measured in its own process",
    )
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[256, 1024, 4096],
        help="samples per call / per training step / number of HMC chains",
    )
    p.add_argument("--dim", type=int, default=32, help="ManyWell dimension (even)")
    p.add_argument("--layers", type=int, default=4, help="RealNVP coupling layers")
    p.add_argument("--width", type=int, default=64, help="conditioner width")
    p.add_argument("--train-steps", type=int, default=20, help="optimiser steps per timing")
    p.add_argument("--hmc-steps", type=int, default=20, help="HMC transitions per timing")
    p.add_argument("--leapfrog", type=int, default=10, help="leapfrog steps per transition")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.devices = [d for d in args.devices if d <= 2] or [1]
        args.batch_sizes = [64]
        args.dim, args.layers, args.width = 4, 2, 16
        args.train_steps, args.hmc_steps, args.leapfrog, args.repeats = 3, 3, 2, 2
    if args.dim < 2 or args.dim % 2:
        p.error(f"--dim must be even and >= 2, got {args.dim}")
    for b in args.batch_sizes:
        bad = [d for d in args.devices if b % d]
        if bad:
            p.error(f"batch size {b} is not divisible by the device count(s) {bad}")
    return args


# ----------------------------------------------------------------------------- worker
def _timed(fn, repeats):
    """Seconds per call of ``fn`` (which blocks), ``repeats`` times after one untimed call."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _rate(work, seconds):
    """Mean and standard error over repeats of ``work / seconds``."""
    import numpy as np

    r = work / np.asarray(seconds)
    se = float(np.std(r, ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan")
    return {"mean": float(np.mean(r)), "stderr": se, "seconds": [float(s) for s in seconds]}


def run_worker(args, num_devices: int) -> dict:
    """Measure every workload and batch size on a mesh of ``num_devices`` devices."""
    import jax
    import optax

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import machine

    import physgen
    from physgen.flows import real_nvp
    from physgen.objectives import ReverseKL
    from physgen.parallel import make_mesh
    from physgen.samplers import HMC, run_mcmc
    from physgen.targets import ManyWell

    if jax.device_count() < num_devices:
        return {"machine": machine(), "skipped": f"only {jax.device_count()} device(s)"}
    mesh = make_mesh(num_devices)
    target = ManyWell(dim=args.dim)
    key = jax.random.key(args.seed)
    flow = real_nvp(jax.random.fold_in(key, 0), args.dim, num_layers=args.layers, width=args.width)
    bg = physgen.BoltzmannGenerator(flow, target)
    hmc = HMC(0.05, args.leapfrog, adapt=False)
    optimizer = optax.adam(1e-3)  # one object: fit's compiled chunk is reused across calls
    rows = []
    for b in args.batch_sizes:
        row = {"batch_size": b}

        def sample(b=b):
            jax.block_until_ready(
                bg.sample_and_log_weights(jax.random.fold_in(key, 1), b, mesh=mesh)
            )

        def train(b=b):
            m, _, _ = physgen.fit(
                jax.random.fold_in(key, 2),
                flow,
                ReverseKL(target, b),
                steps=args.train_steps,
                chunk_size=args.train_steps,
                optimizer=optimizer,
                progress=False,
                mesh=mesh,
            )
            jax.block_until_ready(m)

        def chains(b=b):
            r = run_mcmc(
                jax.random.fold_in(key, 3),
                hmc,
                target,
                num_chains=b,
                num_samples=args.hmc_steps,
                num_warmup=0,
                mesh=mesh,
            )
            jax.block_until_ready(r.samples)

        row["sample_and_log_prob"] = _rate(b, _timed(sample, args.repeats))
        row["training"] = _rate(args.train_steps, _timed(train, args.repeats))
        row["hmc"] = _rate(b * args.hmc_steps, _timed(chains, args.repeats))
        rows.append(row)
        print(
            f"devices={num_devices} batch={b}: "
            + ", ".join(f"{w} {row[w]['mean']:.4g} {UNITS[w]}" for w in WORKLOADS),
            flush=True,
        )
    return {"machine": machine(), "rows": rows}


# ----------------------------------------------------------------------------- driver
def _spawn(args, argv, n: int) -> dict:
    """Run the worker for ``n`` devices in a fresh process (forced host devices on CPU)."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "worker.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
            "--worker",
            str(path),
            "--devices",
            str(n),
        ]
        subprocess.run(cmd, env=env, check=True)
        return json.loads(path.read_text())


def _plot(results, args, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(4.2 * len(WORKLOADS), 3.6))
    for ax, w in zip(axes, WORKLOADS, strict=True):
        for b in args.batch_sizes:
            ds, ms, ss = [], [], []
            for n in args.devices:
                rec = results.get(str(n), {})
                for row in rec.get("rows", []):
                    if row["batch_size"] == b:
                        ds.append(n)
                        ms.append(row[w]["mean"])
                        ss.append(0.0 if math.isnan(row[w]["stderr"]) else row[w]["stderr"])
            if ds:
                ax.errorbar(ds, ms, yerr=ss, marker="o", capsize=3, label=f"batch {b}")
        ax.set_xlabel("devices")
        ax.set_ylabel(UNITS[w])
        ax.set_title(w.replace("_", " "))
        ax.set_xticks(args.devices)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    first = next((r["machine"] for r in results.values() if "machine" in r), {})
    fig.suptitle(
        f"{first.get('platform', '?')}: {first.get('device', '?')} ({os.cpu_count()} CPU cores)",
        fontsize=10,
    )
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"scaling.{ext}", dpi=150)
    plt.close(fig)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker is not None:
        (n,) = args.devices
        payload = run_worker(args, n)
        args.worker.write_text(json.dumps(payload))
        return payload

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import write_json

    # the workers get the same options, minus --devices / --out (set per worker)
    passthrough, skip = [], False
    for a in argv:
        if skip:
            if a.startswith("--"):
                skip = False
            else:
                continue
        if a in ("--devices", "--out"):
            skip = True
            continue
        if a.startswith(("--devices=", "--out=")):
            continue
        passthrough.append(a)
    results = {}
    for n in args.devices:
        results[str(n)] = _spawn(args, passthrough, n)

    # speed-up against the smallest device count, per workload and batch size
    base = results[str(args.devices[0])]
    for n in args.devices:
        rec = results[str(n)]
        for row in rec.get("rows", []):
            ref = next(
                (r for r in base.get("rows", []) if r["batch_size"] == row["batch_size"]), None
            )
            if ref is None:
                continue
            for w in WORKLOADS:
                m, s = row[w]["mean"], row[w]["stderr"]
                m0, s0 = ref[w]["mean"], ref[w]["stderr"]
                ratio = m / m0
                row[w]["speedup"] = ratio
                row[w]["speedup_stderr"] = ratio * math.sqrt((s / m) ** 2 + (s0 / m0) ** 2)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "description": __doc__.split("\n\n")[0],
        "workloads": {w: UNITS[w] for w in WORKLOADS},
        "cpu_count": os.cpu_count(),
        "note": (
            "device counts beyond the physical cores (cpu_count) share cores when the "
            "devices are forced host devices: no speed-up is possible there"
        ),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("worker", "out")
        },
        "results_by_devices": results,
    }
    write_json(args.out / "results.json", payload)
    _plot(results, args, args.out)
    print(_table(results, args))
    print(f"wrote {args.out / 'results.json'} and scaling.png")
    return payload


def _table(results, args) -> str:
    lines = [
        "| devices | batch | " + " | ".join(f"{w} ({UNITS[w]})" for w in WORKLOADS) + " |",
        "|---|---|" + "---|" * len(WORKLOADS),
    ]
    for n in args.devices:
        for row in results[str(n)].get("rows", []):
            cells = []
            for w in WORKLOADS:
                r = row[w]
                c = f"{r['mean']:.4g} ± {r['stderr']:.2g}"
                if "speedup" in r:
                    c += f" (×{r['speedup']:.2f})"
                cells.append(c)
            lines.append(f"| {n} | {row['batch_size']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
