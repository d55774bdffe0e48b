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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rucio_rd.model import Position, RankedReplica, Replica, Site, SiteCatalogue, great_circle_km

__all__ = [
    "DEFAULT_SORT",
    "SORTS",
    "SORT_METHODS",
    "SortMethod",
    "NoSodaReplica",
    "RankingError",
    "choose",
    "rank_replicas",
    "sort_parameter_description",
]

@dataclass(frozen=True)
class SortMethod:
    """One value of the ``sort`` parameter.

    ``order`` puts already ranked replicas (nearest first, ties by name) into
    this method's order, using ``rng`` where it needs chance;
    ``needs_client_position`` says whether it means anything without knowing
    where the client is; ``description`` is for the parameter's documentation
    and ``summary`` completes "replicas ..." in the explanation of an answer;
    ``first_is`` names what the first replica is when the client was located
    and no ``ranking`` moved another first ("nearest replica"); None says
    "chosen replica".
    """

    order: Callable[[list[RankedReplica], random.Random], list[RankedReplica]]
    needs_client_position: bool
    description: str
    summary: str
    first_is: str | None = None


def _shuffled(ranked: list[RankedReplica], rng: random.Random) -> list[RankedReplica]:
    # The input is sorted, so the outcome depends on rng alone, not on the order
    # in which Rucio listed the replicas.
    rng.shuffle(ranked)
    return ranked


#: The ``sort`` methods, the default first.  A new method is a row here and its test;
#: the parameter's description, its validation and the answer's INFO derive from it.
SORT_METHODS: dict[str, SortMethod] = {
    "nearest_by_client": SortMethod(
        order=lambda ranked, rng: ranked,
        needs_client_position=True,
        description="by great-circle distance between the client's geolocated address"
                    " and each replica's site, nearest first",
        summary="ordered by great-circle distance from",
        first_is="nearest replica",
    ),
    "random": SortMethod(
        order=_shuffled,
        needs_client_position=False,
        description="in random order",
        summary="in random order",
    ),
}
DEFAULT_SORT = next(iter(SORT_METHODS))
#: The accepted values of ``sort``; the first is the default.
SORTS = tuple(SORT_METHODS)


def sort_parameter_description() -> str:
    """The ``sort`` parameter's documentation, from :data:`SORT_METHODS`."""
    choices = "; ".join(
        f"{name}{' (default)' if name == DEFAULT_SORT else ''}: {method.description}"
        for name, method in SORT_METHODS.items())
    return f"Methods: {choices}."


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
    sort: str = DEFAULT_SORT,
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
        Where the client is.  Without it, distances are unknown and the
        replicas come in RSE-name order before a method reorders them.
    sort : str
        A key of :data:`SORT_METHODS`.  The replicas are first ranked by
        great-circle distance to the client, ties by RSE name, replicas without
        a known position last (by RSE name); the method then orders that list
        (``"nearest_by_client"`` keeps it, ``"random"`` shuffles it).
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
    method = SORT_METHODS.get(sort)
    if method is None:
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
    ranked.sort(key=_nearest_first)
    return method.order(ranked, rng if rng is not None else random.Random())


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
