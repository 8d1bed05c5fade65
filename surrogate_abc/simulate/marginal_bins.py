"""One observed species' exact marginal law on a protocol's bins, vectorised over parameter sets: the mRNA of a
telegraph (two-state promoter) network, whose stationary law is the Beta-Poisson closed form
(networks.closed_form), binned on given edges. Joint emulators' mRNA factors are trained and checked against it."""
from __future__ import annotations

import numpy as np

from ..config import Protocol
from ..data.binning import rebin_grid
from ..errors import UserError
from ..networks import ReactionNetwork
from ..networks.closed_form import beta_poisson_pmf_rows, match_beta_poisson

_CHUNK = 64  # parameter sets per pmf table: its width follows the chunk's largest v / d


def beta_poisson_bins(protocol: Protocol, theta: np.ndarray, edges: np.ndarray, species: str = "mrna") -> np.ndarray:
    """(n, len(edges) - 1) exact masses of `species`'s bins [edges[i], edges[i + 1]) at parameter sets theta
    (n, d) of the protocol, from the Beta-Poisson law of a telegraph network's mRNA; UserError when the
    protocol's network gives `species` no such law."""
    net = protocol.network
    roles = match_beta_poisson(net, species) if isinstance(net, ReactionNetwork) else None
    if roles is None:
        raise UserError(f"{protocol.source}: {species!r} of the {getattr(net, 'name', '?')} network has no "
                        f"Beta-Poisson (telegraph mRNA) law; exact marginal bins need one")
    edges = np.asarray(edges, dtype=float)
    rates = protocol.rates(np.atleast_2d(theta))
    names = list(protocol.rate_names)
    out = np.empty((len(rates), len(edges) - 1))
    for s in range(0, len(rates), _CHUNK):
        r = {k: rates[s:s + _CHUNK, names.index(v)] for k, v in roles.items()}
        out[s:s + _CHUNK] = rebin_grid(beta_poisson_pmf_rows(r, int(edges[-1])), edges)[0]
    return out
