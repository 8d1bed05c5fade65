"""One observed species' exact marginal law on a protocol's bins, vectorised over parameter sets: the mRNA of a
telegraph (two-state promoter) network, whose stationary law is the Beta-Poisson closed form
(networks.closed_form), binned on given edges. Joint emulators' mRNA factors are trained and checked against it."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..config import Protocol
from ..data.binning import rebin_grid
from ..errors import UserError
from ..networks import ReactionNetwork
from ..networks.closed_form import beta_poisson_pmf_rows, match_beta_poisson

_CHUNK = 512  # parameter sets per pmf table: its width follows the chunk's largest v / d


def binned_beta_poisson(r: Mapping[str, Any], edges: np.ndarray, cap: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(n, len(edges) - 1) masses of the bins [edges[i], edges[i + 1]) and (n,) the mass outside them, of the
    Beta-Poisson law at role values r (k_on, k_off, v, d: arrays of n sets, or scalars), its pmf computed at least
    to `cap` (default the last edge) and in chunks of sets."""
    edges = np.asarray(edges, dtype=float)
    n = int(np.broadcast(*(np.asarray(v) for v in r.values())).size)
    top = int(edges[-1]) if cap is None else int(cap)
    probs, overflow = np.empty((n, len(edges) - 1)), np.empty(n)
    for s in range(0, n, _CHUNK):
        part = {k: np.broadcast_to(np.asarray(v, float), (n,))[s:s + _CHUNK] for k, v in r.items()}
        probs[s:s + _CHUNK], overflow[s:s + _CHUNK] = rebin_grid(beta_poisson_pmf_rows(part, top), edges)
    return probs, overflow


def beta_poisson_bins(protocol: Protocol, theta: np.ndarray, edges: np.ndarray, species: str = "mrna") -> np.ndarray:
    """(n, len(edges) - 1) exact masses of `species`'s bins [edges[i], edges[i + 1]) at parameter sets theta
    (n, d) of the protocol, from the Beta-Poisson law of a telegraph network's mRNA; UserError when the
    protocol's network gives `species` no such law."""
    net = protocol.network
    roles = match_beta_poisson(net, species) if isinstance(net, ReactionNetwork) else None
    if roles is None:
        raise UserError(f"{protocol.source}: {species!r} of the {getattr(net, 'name', '?')} network has no "
                        f"Beta-Poisson (telegraph mRNA) law; exact marginal bins need one")
    rates = protocol.rates(np.atleast_2d(theta))
    names = list(protocol.rate_names)
    return binned_beta_poisson({k: rates[:, names.index(v)] for k, v in roles.items()}, edges)[0]
