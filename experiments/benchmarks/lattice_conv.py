"""Periodic convolutions of the lattice flows: matrix product over shifts vs ``eqx.nn.Conv2d``.

:class:`physgen.nn.PeriodicConvNet` evaluates each circular-padded convolution as one matrix
product over the ``k²`` periodic shifts of the field (:func:`physgen.nn.periodic_conv`).
This script times, for the same networks and parameters, the gradient with respect to the
parameters in that form and in the reference form that calls the ``eqx.nn.Conv2d`` layers
(XLA convolutions), and checks that the two agree, in two contexts: one net on a batch of
fields, and ``--layers`` nets with stacked parameters applied in a ``lax.scan`` (how
``lattice_flow`` applies its coupling layers).

Times are after compilation, the median of ``--repeats`` interleaved repeats.
Writes results.json and lattice_conv.{png,pdf} to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine, write_json  # noqa: E402

from physgen.nn import PeriodicConvNet  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/lattice_conv"))
    p.add_argument("--quick", action="store_true", help="tiny sizes for tests (seconds)")
    p.add_argument("--L", type=int, default=8, help="lattice size")
    p.add_argument("--channels", nargs="+", type=int, default=[8, 16, 32],
                   help="hidden channels (two hidden layers of this width)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--layers", type=int, default=16, help="stacked nets in the scanned context")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    if args.quick:
        args.L, args.channels, args.batch_size, args.repeats, args.layers = 4, [4], 8, 3, 2
    return args


def reference(net: PeriodicConvNet, x):
    """The same network through the ``eqx.nn.Conv2d`` layers (XLA convolutions)."""
    for layer in net.layers[:-1]:
        x = net.activation(layer(x))
    return net.layers[-1](x)


def _scanned_loss(forward, x):
    """``Σ |h_N|²`` after ``h ← h + tanh(net_l(h))[:1] / 10`` for a stack of nets scanned with
    ``lax.scan``, as a flow applies its stacked coupling layers."""

    def loss(nets):
        params, static = eqx.partition(nets, eqx.is_array)

        def step(h, p):
            net = eqx.combine(p, static)
            out = jax.vmap(lambda hi: forward(net, hi))(h)
            return h + 0.1 * jnp.tanh(out[:, :1]), None

        h, _ = jax.lax.scan(step, x, params)
        return jnp.sum(h**2)

    return loss


def _single_loss(forward, x):
    return lambda net: jnp.sum(jax.vmap(lambda xi: forward(net, xi))(x) ** 2)


def time_channels(c: int, args) -> dict:
    x = jax.random.normal(jax.random.key(1), (args.batch_size, 1, args.L, args.L))
    keys = jax.random.split(jax.random.key(0), args.layers)
    nets = eqx.filter_vmap(lambda k: PeriodicConvNet(1, 2, (c, c), args.kernel, key=k))(keys)
    single = PeriodicConvNet(1, 2, (c, c), args.kernel, key=keys[0])
    forms = {"matrix_product": PeriodicConvNet.__call__, "xla_conv": reference}
    row = {"hidden_channels": c}
    for context, make_loss, model in (("single_net", _single_loss, single),
                                      ("scanned_layers", _scanned_loss, nets)):
        fns = {name: eqx.filter_jit(eqx.filter_value_and_grad(make_loss(fwd, x)))
               for name, fwd in forms.items()}
        values = {name: f(model) for name, f in fns.items()}
        jax.block_until_ready(values)
        (v_mp, g_mp), (v_ref, g_ref) = values["matrix_product"], values["xla_conv"]
        rel = max(float(jnp.max(jnp.abs(a - b))) / max(float(jnp.max(jnp.abs(b))), 1e-30)
                  for a, b in zip(jax.tree_util.tree_leaves(g_mp),
                                  jax.tree_util.tree_leaves(g_ref), strict=True))
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(model))
                times[name].append(time.perf_counter() - t0)
        med = {name: float(np.median(t)) for name, t in times.items()}
        row[context] = {
            "grad_time_s": med,
            "speedup_xla_conv_over_matrix_product": med["xla_conv"] / med["matrix_product"],
            "loss_relative_difference": abs(float(v_mp) - float(v_ref)) / max(abs(float(v_ref)),
                                                                             1e-30),
            "grad_max_relative_difference": rel,
        }
    return row


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in args.channels:
        r = time_channels(c, args)
        rows.append(r)
        for context in ("single_net", "scanned_layers"):
            q = r[context]
            print(f"hidden {c:>3} {context:>15}: matrix product "
                  f"{q['grad_time_s']['matrix_product'] * 1e3:8.2f} ms   XLA conv "
                  f"{q['grad_time_s']['xla_conv'] * 1e3:8.2f} ms   XLA / matrix product "
                  f"{q['speedup_xla_conv_over_matrix_product']:5.2f}   max rel. grad difference "
                  f"{q['grad_max_relative_difference']:.1e}", flush=True)
    results = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": machine(), "dtype": str(jnp.result_type(float)), "rows": rows,
               "notes": ["gradient of sum |net(phi)|^2 over a batch w.r.t. the parameters; "
                         "median of interleaved repeats after compilation"]}
    write_json(args.out / "results.json", results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = np.arange(len(rows))
    for ax, context in zip(axes, ("single_net", "scanned_layers"), strict=True):
        for off, name in ((-0.2, "matrix_product"), (0.2, "xla_conv")):
            ax.bar(xs + off, [r[context]["grad_time_s"][name] * 1e3 for r in rows], 0.4,
                   label=name)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(r["hidden_channels"]) for r in rows])
        ax.set_xlabel("hidden channels"), ax.set_ylabel("gradient time (ms)")
        what = "one net" if context == "single_net" else f"{args.layers} nets in lax.scan"
        ax.set_title(f"{what}; L = {args.L}, batch {args.batch_size}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(args.out / f"lattice_conv.{ext}", dpi=130)
    plt.close(fig)
    return results


if __name__ == "__main__":
    main()
