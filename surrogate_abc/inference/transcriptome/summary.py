"""The closing lines of a batch run: genes inferred by each method, skipped and flagged, and why."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .checks import PPC_ALPHA

if TYPE_CHECKING:
    from .run import Prepared


def summarise(rows: Sequence[Mapping[str, Any]], prep: Prepared, seconds: float) -> str:
    """The closing lines: genes inferred by each method, skipped and flagged, and why."""
    n_smc = sum(r["method"] == "smc" for r in rows)
    lines = [f"{len(rows)} gene(s) inferred in {seconds:.1f} s ({len(rows) - n_smc} batch, {n_smc} rerun with "
             f"ABC-SMC); {len(prep.skipped)} skipped" + (f" ({skip_summary(prep.skipped)})" if prep.skipped else "")]
    reasons: dict[str, int] = {}
    flagged = 0
    for r in rows:
        fl = [f for f in str(r["flags"]).split(";") if f]
        flagged += bool(fl)
        for f in fl:
            reasons[f] = reasons.get(f, 0) + 1
    if flagged:
        why = {"ppc": f"posterior-predictive p <= {PPC_ALPHA:g} (the model does not fit)",
               "low_ess": "ESS below the floor"}
        parts = [f"{why.get(f, 'posterior against the prior bound ' + f[6:] if f.startswith('bound:') else f)}: {n}"
                 for f, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
        lines.append(f"{flagged} gene(s) flagged: " + "; ".join(parts) + " (column `flags` of genes.csv)")
    else:
        lines.append("no gene flagged")
    return "\n".join(lines)


def skip_summary(skipped: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for reason in skipped.values():
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{reason}: {n}" for reason, n in counts.items())
