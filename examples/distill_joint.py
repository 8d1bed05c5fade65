"""Stage 2e of the default joint emulator: its conditional head distilled into a cheaper one (issue 29, speed).

A joint likelihood evaluates the conditional head once per parameter set and occupied mRNA bin (31 bins for
the joint example), so the head's two 128-wide layers were most of a joint chain. This script trains a network
with a head of two 48-wide layers (`--head 48 48`) to match the shipped joint emulator (the teacher, its exact
mRNA marginal attached) on parameter sets drawn from the whole prior. KL(joint) = KL(mRNA marginal) +
E_a KL(p(protein | a)), and the student's mRNA factor is the teacher's marginal (frozen), so it learns the
conditional alone: training rows are (theta, mRNA bin a) pairs, a drawn from the teacher's p(a | theta) (three
of four rows; the fourth uniformly among bins of mass > 1e-4), their target the teacher's protein bins given a
(151 values instead of a set's 12,001), the loss the rows' KL (`mdd_kld`). The student starts from the teacher's
trunk and runs training.loop.fit (early stopping on held-out draws, checkpoints, --max-seconds). The result keeps
the teacher's input scaling, protocol and marginal, so it replaces the shipped file as is.

With `--exact BINNED` (exact sets: `simulate --engine pgf`, then `bin`) rows with exact targets join the teacher's:
per set, --exact-rows mRNA bins drawn the same way from the exact (Beta-Poisson) mRNA law, the target the set's
protein bins in that mRNA bin divided by its exact mass, the mass beyond the last protein edge what the bins miss
of it. Early stopping then watches the rows of held-out exact sets (--exact-validation, split by parameter set).
With the teacher's own head widths the student starts as the teacher: fine-tuning toward the exact law (stage 2f);
with `--widen` and wider --head widths it starts as the teacher too, its head widened (the same law, more units);
with `--components-factor M` it has M times the teacher's components per mRNA bin, each copied M times (the same
law but for a small jitter: where the 8-component family itself leaves a floor, as at the slow-switching corner).
With `--focus KL` the exact training sets that the teacher fits worst (mean row KL above KL) weigh --focus-repeat
times as much in the loss (their rows repeated), to pull the worst sets under 1e-3 per cell (tried on stage 2t with
--focus 5e-4: 291 of 3420 sets weighed 3x; held-out means 1% lower, the worst sets moved both ways, seed 302's
largest 1.25e-3 -> 1.17e-3 and the slow-switching corner's 1.15e-3 -> 1.31e-3, so no released stage uses it).
With `--loss kld` the rows' loss is KL(target || student) alone, the direction of the held-out figures, instead of
the larger of both directions (tried on stage 2w: the corner's and the pocket's means 7-9% lower, three held-out
sets at or above 1e-3 instead of one, so no released stage uses it).

  python examples/distill_joint.py --out gene_joint_distilled.safetensors [--teacher FILE] [--head 48 48] [--widen]
      [--components-factor M]
      [--theta 60000] [--validation 2000] [--seed 7] [--max-seconds 3000] [--threads 2] [--lr 1e-3]
      [--exact BINNED ...] [--exact-rows 32] [--exact-validation 0.1] [--focus KL] [--focus-repeat 3] [--loss mdd_kld|kld]
      [--validate BINNED]   # exact held-out targets: teacher and student measured, stored as validation_metrics

Its accuracy against exact references over the whole prior is measured by benchmarks/joint_whole_prior.py
(generating-function targets) and its speed by benchmarks/joint_speed.py.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surrogate_abc.emulators.conditional import ConditionalMDN, bin_features  # noqa: E402
from surrogate_abc.emulators.distributions import _sum_into, mixture_pmf_grid  # noqa: E402
from surrogate_abc.emulators.emulator import Emulator  # noqa: E402
from surrogate_abc.emulators.io import save_emulator  # noqa: E402
from surrogate_abc.emulators.resolve import resolve_emulator  # noqa: E402
from surrogate_abc.emulators.widen import widen_head_state, widen_state  # noqa: E402
from surrogate_abc.losses import get_loss, kl_rows, metrics  # noqa: E402
from surrogate_abc.simulate.marginal_bins import beta_poisson_bins  # noqa: E402
from surrogate_abc.training.config import TrainSettings  # noqa: E402
from surrogate_abc.training.heldout import compare_on_heldout  # noqa: E402
from surrogate_abc.training.loop import fit  # noqa: E402


def student_of(teacher: ConditionalMDN, head: tuple[int, ...], widen: bool = False, seed: int = 0,
               factor: int = 1) -> ConditionalMDN:
    """A conditional MDN like `teacher` with another head: trunk and own mRNA factor copied, the teacher's
    attached marginal (frozen) as its mRNA factor; the head freshly initialised, or copied when its widths are
    the teacher's (training then goes on from the teacher: fine-tuning on exact rows), or with `widen` the
    teacher's head widened to `head` computing the same law (emulators.widen.widen_head_state). With `factor`
    m >= 2 (the teacher's head widths only) the student has m times the teacher's components, each copied m
    times (emulators.widen.widen_state: the same mixture but for a small jitter of the copies' means)."""
    s = ConditionalMDN(teacher.d_in, teacher.family, teacher.n_components * factor, teacher.binning, teacher.hidden,
                       teacher.activation, head)
    same = tuple(head) == teacher.head
    own = {k: v for k, v in teacher.state_dict().items() if not k.startswith("marginal")}  # attached below
    if factor > 1:
        if not same:
            raise SystemExit(f"--components-factor copies the teacher's head: give its widths (--head "
                             f"{' '.join(map(str, teacher.head))}), not {' '.join(map(str, head))}")
        s.load_state_dict(widen_state(own, {"type": "mdn_conditional"}, factor, teacher.family.raw_size), strict=False)
    elif widen and not same:
        s.load_state_dict(widen_head_state(own, teacher.head, head, seed), strict=False)
    else:
        names = [n for n, _ in teacher.named_children() if n != "marginal"] if same else ["trunk", "a_weights",
                                                                                           "a_params"]
        for name in names:
            getattr(s, name).load_state_dict(getattr(teacher, name).state_dict())
    if teacher.marginal is None:
        raise SystemExit("the teacher has no attached mRNA marginal (emulators.compose.attach_marginal)")
    s.set_marginal(copy.deepcopy(teacher.marginal), teacher.marginal_scale.clone(), teacher.marginal_shift.clone())
    for p in s.marginal.parameters():  # type: ignore[union-attr]
        p.requires_grad_(False)
    return s


class ConditionalRows(nn.Module):
    """p(protein bin | mRNA bin a, theta) of a conditional MDN, one (theta, a) pair per row: input (n, d + 1)
    features then the bin a; output (n, B + 1), the protein bins then the mass outside them (beyond the last
    edge or the integer support). The joint KL is the a-bin masses' average of these rows' KL, so rows with a
    drawn from p(a | theta) give it without the other 79 mRNA bins' work."""

    def __init__(self, model: ConditionalMDN):
        super().__init__()
        self.model = model
        b = model.binning
        self.register_buffer("feats", bin_features(b.edges_np[0], torch.device("cpu"), torch.float32))
        self.register_buffer("index", model._binning.on(torch.device("cpu")).index[1].clone())
        self.n_bins, self.support = int(b.shape[1]), int(b.support[1])

    def forward(self, xa: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, a = xa[:, :-1], xa[:, -1].long()
        log_w, params = m.head_mixture(m.head_theta(m.trunk(x)) + m.head_m(self.feats[a]))
        grid = mixture_pmf_grid(m.family, log_w, params, (self.support,))
        bins = _sum_into(grid, self.index, self.n_bins, dim=1)
        missing = (1.0 - bins.sum(dim=1, keepdim=True)).clamp(min=0.0)
        return torch.cat([bins[:, :-1], bins[:, -1:] + missing], dim=1)


def pairs(teacher: Emulator, n_theta: int, seed: int, per_theta: int = 4) -> torch.Tensor:
    """(n_theta * per_theta, d + 1) rows (features, mRNA bin): theta from the prior, the bins drawn from the
    teacher's p(a | theta) (`draw_bins`)."""
    rng = np.random.default_rng(seed)
    theta = teacher.protocol.sample(n_theta, seed=seed)
    x = torch.as_tensor(teacher.features(theta), dtype=torch.float32)
    m = teacher.model
    with torch.no_grad():
        pa = m._a_bin_masses(x, *m.factors(x)[:2]).double().numpy()          # (n, A) teacher's mRNA bins
    a = draw_bins(rng, pa, per_theta).reshape(-1)
    return torch.cat([x.repeat_interleave(per_theta, dim=0), torch.as_tensor(a, dtype=torch.float32)[:, None]], dim=1)


def draw_bins(rng: np.random.Generator, pa: np.ndarray, per_row: int, floor: float = 1e-4) -> np.ndarray:
    """(n, per_row) mRNA bins per row of the bin masses pa (n, A): all but one drawn from pa (renormalised), the
    last uniformly among bins of mass > floor (the likelihood also meets mRNA bins a parameter set makes rare)."""
    pa = np.clip(pa, 0.0, None)
    pa = pa / pa.sum(axis=1, keepdims=True)
    cdf = np.cumsum(pa, axis=1)
    n, A = pa.shape
    drawn = [np.minimum((cdf < rng.random((n, 1))).sum(axis=1), A - 1) for _ in range(per_row - 1)]
    live = pa > floor
    u = rng.random((n, 1)) * live.sum(axis=1, keepdims=True)
    drawn.append(np.minimum((np.cumsum(live, axis=1) <= u).sum(axis=1), A - 1))
    return np.stack(drawn, axis=1)


def exact_pairs(teacher: Emulator, files: list[Path], per_set: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Rows (features, mRNA bin a) with exact targets p(protein bin | a, theta) from binned files of exact sets
    (`simulate --engine pgf` or fsp, then `bin`): per set, per_set bins drawn as in `pairs` from the exact mRNA
    law; a row's mass beyond the protein bins is the exact P(a) less the row's binned mass. Returns (xa, y, set
    index) so that training and validation split by parameter set."""
    rng = np.random.default_rng(seed)
    xa, ys, owner, start = [], [], [], 0
    shape = tuple(int(k) for k in getattr(teacher.model, "binning").shape)
    for path in files:
        with h5py.File(path) as f:
            theta, hist, edges = f["theta"][()], f["hist"][()], f["edges/mrna"][()]
        if hist.shape[1:] != shape:
            raise SystemExit(f"{path}: bins {hist.shape[1:]} are not the teacher's {shape}: bin it with the "
                             f"teacher's protocol")
        pa = beta_poisson_bins(teacher.protocol, theta, edges)
        a = draw_bins(rng, pa, per_set)                                            # (n, per_set)
        n = len(theta)
        rows = hist[np.arange(n)[:, None], a]                                       # (n, per_set, B)
        mass = pa[np.arange(n)[:, None], a][..., None]
        beyond = np.clip(mass - rows.sum(axis=2, keepdims=True), 0.0, None)
        y = np.concatenate([rows, beyond], axis=2)
        keep = (mass[..., 0] > 1e-12).reshape(-1)  # a bin of no mass (a draw's rounding) has no conditional law
        y = (y / y.sum(axis=2, keepdims=True).clip(min=1e-300)).reshape(n * per_set, -1)
        x = np.repeat(teacher.features(theta), per_set, axis=0)
        xa.append(np.concatenate([x, a.reshape(-1, 1)], axis=1)[keep])
        ys.append(y[keep])
        owner.append(np.repeat(np.arange(start, start + n), per_set)[keep])
        start += n
    return (torch.as_tensor(np.concatenate(xa), dtype=torch.float32),
            torch.as_tensor(np.concatenate(ys), dtype=torch.float32), torch.as_tensor(np.concatenate(owner)))


def focus_rows(rows: nn.Module, xa: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, threshold: float,
               repeat: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row indices repeating every row of the sets whose mean row KL(exact || `rows`) is above `threshold`
    `repeat` times in all (the others once): the loss then weighs the sets the starting network fits worst
    `repeat` times as much. Returns (indices, per-set mean KL, sets repeated)."""
    kl = kl_rows(y, rows_of(rows, xa)).double()
    n_sets = int(owner.max()) + 1
    per_set = torch.bincount(owner, kl, n_sets) / torch.bincount(owner, minlength=n_sets).clamp(min=1)
    hard = per_set > threshold
    extra = torch.nonzero(hard[owner]).reshape(-1).repeat(max(repeat - 1, 0))
    return torch.cat([torch.arange(len(owner)), extra]), per_set, hard


def rows_of(model: nn.Module, xa: torch.Tensor) -> torch.Tensor:
    """model(xa) in chunks without gradients (the teacher's targets)."""
    with torch.no_grad():
        return torch.cat([model(xa[s:s + 4096]) for s in range(0, len(xa), 4096)])


def joint_metrics(teacher: Emulator, student: ConditionalMDN, theta: np.ndarray) -> dict:
    """metrics (H2, KLD, ...) of the student's whole joint pmf against the teacher's at theta."""
    x = torch.as_tensor(teacher.features(theta), dtype=torch.float32)
    with torch.no_grad():
        return metrics(student(x), teacher.model(x))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--teacher", default=None, help="joint emulator file (default: the shipped one)")
    ap.add_argument("--head", type=int, nargs="+", default=[48, 48], help="widths of the student's conditional head")
    ap.add_argument("--widen", action="store_true",
                    help="with a --head wider than the teacher's (same depth): start from the teacher's head widened "
                         "to it, the same law (fine-tuning with more capacity), not a fresh head")
    ap.add_argument("--components-factor", type=int, default=1, metavar="M",
                    help="M >= 2: the student has M times the teacher's mixture components per mRNA bin, starting as "
                         "the teacher's law (each component copied M times); needs the teacher's --head widths")
    ap.add_argument("--theta", type=int, default=60000, help="training parameter sets (prior draws), 4 mRNA bins each")
    ap.add_argument("--validation", type=int, default=2000, help="held-out parameter sets (early stopping)")
    ap.add_argument("--seed", type=int, default=7, help="prior draws: training of SEED, validation of SEED + 1")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-seconds", type=float, default=3000.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact", type=Path, action="append", default=[], metavar="BINNED",
                    help="binned file of exact sets (simulate --engine pgf, bin): rows with exact targets join the "
                         "teacher's (repeat the flag for more files); early stopping then watches held-out exact sets")
    ap.add_argument("--exact-rows", type=int, default=32, help="rows (mRNA bins) drawn per exact set")
    ap.add_argument("--exact-validation", type=float, default=0.1, help="share of exact sets held out")
    ap.add_argument("--focus", type=float, default=None, metavar="KL",
                    help="exact training sets whose rows the teacher fits with a mean KL above KL weigh --focus-repeat "
                         "times as much (their rows repeated)")
    ap.add_argument("--focus-repeat", type=int, default=3)
    ap.add_argument("--loss", default="mdd_kld", choices=["mdd_kld", "kld"],
                    help="per-row loss: max of both KL directions (mdd_kld) or KL(exact || student) alone (kld, the "
                         "held-out figures' direction)")
    ap.add_argument("--validate", type=Path, default=None, metavar="BINNED",
                    help="binned file of exact held-out targets: teacher and student measured on it (metadata "
                         "validation_metrics, as attach-marginal --validate)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher, teacher_sha = resolve_emulator(args.teacher, ("mrna", "protein"))
    source = getattr(teacher, "source", "") or str(args.teacher)
    if not isinstance(teacher, Emulator) or not isinstance(teacher.model, ConditionalMDN):
        raise SystemExit(f"{source}: the teacher must be a conditional MDN joint emulator")
    if args.components_factor < 1:  # the student (and its checks) before the targets' minutes of work
        raise SystemExit(f"--components-factor must be >= 1, got {args.components_factor}")
    student = student_of(teacher.model, tuple(args.head), args.widen, args.seed, args.components_factor)
    t0 = time.perf_counter()
    rows = ConditionalRows(teacher.model)
    xa_tr = pairs(teacher, args.theta, args.seed)
    y_tr = rows_of(rows, xa_tr)
    if not args.exact:  # with --exact, early stopping watches held-out exact sets instead
        xa_va = pairs(teacher, args.validation, args.seed + 1)
        y_va = rows_of(rows, xa_va)
    print(f"teacher targets: {len(xa_tr)} (theta, mRNA bin) rows x {y_tr.shape[1]} protein bins in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.exact:
        xa_ex, y_ex, owner = exact_pairs(teacher, args.exact, args.exact_rows, args.seed)
        n_sets = int(owner.max()) + 1
        n_held = min(n_sets - 1, max(1, round(args.exact_validation * n_sets)))
        held = torch.zeros(n_sets, dtype=torch.bool)
        held[torch.as_tensor(np.random.default_rng(args.seed).permutation(n_sets)[:n_held])] = True
        held = held[owner]
        train = torch.nonzero(~held).reshape(-1)
        if args.focus is not None:
            pick, per_set, hard = focus_rows(rows, xa_ex[train], y_ex[train], owner[train], args.focus,
                                             args.focus_repeat)
            train = train[pick]
            print(f"focus: {int(hard.sum())} training sets with a mean row KL above {args.focus:g} (mean "
                  f"{float(per_set[hard].mean()) if hard.any() else 0.0:.2e}) weigh {args.focus_repeat}x", flush=True)
        xa_tr, y_tr = torch.cat([xa_tr, xa_ex[train]]), torch.cat([y_tr, y_ex[train]])
        xa_va, y_va = xa_ex[held], y_ex[held]
        print(f"exact targets: {n_sets} sets x {args.exact_rows} rows, {int(held.sum())} rows of "
              f"{int(held.sum()) // args.exact_rows} held-out sets for early stopping", flush=True)
    settings = TrainSettings(loss=args.loss, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, patience=20,
                             lr_decay=0.5, lr_patience=5, min_lr=1e-6, max_seconds=args.max_seconds, seed=args.seed)
    hist = fit(ConditionalRows(student), xa_tr, y_tr, xa_va, y_va, loss_fn=get_loss(args.loss), metrics_fn=metrics,
               settings=settings, checkpoint=args.out.with_suffix(".ckpt"),
               fingerprint=f"distill {teacher_sha} {args.head} {args.theta} {args.seed} {args.exact}", progress=True,
               desc="distill", loss_name=args.loss)
    student.eval()
    val = joint_metrics(teacher, student, teacher.protocol.sample(500, seed=args.seed + 2))
    meta = dict(teacher.metadata)
    meta["distilled"] = {"teacher": Path(source).name, "teacher_sha256": teacher_sha, "head": list(args.head),
                         "theta": args.theta, "validation_theta": args.validation, "seed": args.seed,
                         "exact": [p.name for p in args.exact], "exact_rows": args.exact_rows,
                         "focus": args.focus, "focus_repeat": args.focus_repeat if args.focus is not None else None,
                         "widened": args.widen, "components_factor": args.components_factor, "loss": args.loss, "best_epoch": hist["best_epoch"], "epochs": len(hist["epochs"]),
                         "stopped": hist["stopped"], "joint_metrics_vs_teacher": val,
                         "lr": args.lr, "teacher_distilled": meta.get("distilled")}  # the teacher's own record, if any
    result = Emulator(student, teacher.protocol, teacher.scaling_mean, teacher.scaling_std, teacher.transforms, meta)
    print("student vs teacher, whole joint pmf at 500 prior draws: " + ", ".join(f"{k} {v:.3g}" for k, v in val.items()))
    if args.validate is not None:
        before, after, record, change = compare_on_heldout(teacher, result, args.validate)
        result.metadata.update(teacher_validation_metrics=before, validation_metrics=after, validation_data=record)
        print(f"held-out {args.validate.name} ({record['sets']} sets with exact targets), teacher -> student: {change}")
    else:  # the teacher's figures would describe another network
        for key in ("validation_metrics", "validation_data", "teacher_validation_metrics"):
            result.metadata.pop(key, None)
    save_emulator(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
