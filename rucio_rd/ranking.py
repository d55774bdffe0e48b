"""Which replica to hand out: replicas plus the client's position, in order of preference.

Pure functions over values: :func:`rank_replicas` orders a file's replicas
(nearest to the client first, or at random), optionally keeping only those at
sites with a SODA service; :func:`choose` picks the ``ranking``-th of them and
keeps the rest, in order, as fallbacks.

This module must not do I/O: no Rucio calls, no GeoIP lookups, no site
directory, no DaCHS.  The caller brings the replicas, the
:class:`~rucio_rd.model.SiteCatalogue` and the client's
:class:`~rucio_rd.model.Position`, and turns the errors raised here into
DataLink faults (:class:`RankingError` -> UsageFault, :class:`NoSodaReplica`
and an empty result -> NotFoundFault).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rucio_rd.geo import great_circle_km
from rucio_rd.model import Position, RankedReplica, Replica, Site, SiteCatalogue

__all__ = [
    "SORTS",
    "NoSodaReplica",
    "RankingError",
    "choose",
    "rank_replicas",
]

#: The accepted values of ``sort``; the first is the default.
SORTS = ("nearest_by_client", "random")


class RankingError(ValueError):
    """A usage error in the ranking parameters; the message gives the valid choices."""


class NoSodaReplica(LookupError):
    """SODA was required, and no replica's site offers it."""


def _distance(client: Position | None, site: Site | None) -> float | None:
    if client is None or site is None or site.position is None:
        return None
    return great_circle_km(client, site.position)


def _nearest_first(ranked: RankedReplica) -> tuple[bool, float, str, str]:
    # Unknown distances sort after all known ones; names break ties so that
    # the same request always gets the same answer.
    distance = ranked.distance_km
    return (
        distance is None,
        0.0 if distance is None else distance,
        ranked.replica.rse,
        ranked.replica.pfn,
    )


def rank_replicas(
    replicas: Sequence[Replica],
    catalogue: SiteCatalogue,
    client: Position | None,
    sort: str = "nearest_by_client",
    must_include_soda: bool = False,
    rng: random.Random | None = None,
) -> list[RankedReplica]:
    """Order a file's replicas by preference.

    Parameters
    ----------
    replicas : sequence of Replica
        The file's replicas, in any order.
    catalogue : SiteCatalogue
        Where each RSE is and what its site offers.
    client : Position or None
        Where the client is.  With ``nearest_by_client`` and no client
        position, the replicas come in RSE-name order.
    sort : str
        ``"nearest_by_client"``: by great-circle distance to the client,
        ties by RSE name, replicas without a known position last (by RSE
        name).  ``"random"``: a uniform shuffle.
    must_include_soda : bool
        Keep only replicas whose site offers a SODA service.
    rng : random.Random or None
        The randomness for ``sort="random"``; by default a fresh
        ``random.Random()``.

    Returns
    -------
    list of RankedReplica
        Best first; empty if ``replicas`` is empty.

    Raises
    ------
    RankingError
        If ``sort`` is not one of :data:`SORTS`.
    NoSodaReplica
        If ``must_include_soda`` is set and no replica's site offers SODA;
        the message names the RSEs considered.
    """
    if sort not in SORTS:
        raise RankingError(f"sort={sort!r} is not supported; use one of {', '.join(SORTS)}")
    ranked = [
        RankedReplica(replica, site, _distance(client, site))
        for replica in replicas
        for site in [catalogue.site_for_rse(replica.rse)]
    ]
    if must_include_soda and ranked:
        with_soda = [item for item in ranked if item.site is not None and item.site.has_soda]
        if not with_soda:
            considered = ", ".join(sorted({item.replica.rse for item in ranked}))
            raise NoSodaReplica(
                f"no replica is at a site offering SODA (RSEs considered: {considered}); "
                "retry without must_include_soda"
            )
        ranked = with_soda
    if sort == "random":
        # Sort first so that the outcome depends on rng alone, not on the
        # order in which Rucio listed the replicas.
        ranked.sort(key=_nearest_first)
        (rng if rng is not None else random.Random()).shuffle(ranked)
    else:
        ranked.sort(key=_nearest_first)
    return ranked


def choose(ranked: Sequence[RankedReplica], ranking: int = 0) -> list[RankedReplica]:
    """The ``ranking``-th replica first, then the others in rank order as fallbacks.

    Parameters
    ----------
    ranked : sequence of RankedReplica
        The output of :func:`rank_replicas`.
    ranking : int
        0 for the best replica, 1 for the next, ...

    Returns
    -------
    list of RankedReplica
        ``ranked[ranking]`` followed by the remaining replicas in order.

    Raises
    ------
    RankingError
        If ``ranking`` is not an integer, is negative, or is not below the
        number of replicas.
    """
    if isinstance(ranking, bool) or not isinstance(ranking, int):
        raise RankingError(f"ranking={ranking!r} is not an integer; use 0 for the nearest replica")
    count = len(ranked)
    if ranking < 0:
        raise RankingError(
            f"ranking={ranking} is negative; use 0..{count - 1}" if count
            else f"ranking={ranking} is negative; use 0 for the nearest replica"
        )
    if ranking >= count:
        # The wording is part of the contract (tests elsewhere pin it), even for 1.
        way_out = f"use 0..{count - 1}" if count else "there is nothing to choose"
        raise RankingError(f"ranking={ranking} but only {count} replicas; {way_out}")
    return [ranked[ranking], *ranked[:ranking], *ranked[ranking + 1:]]
