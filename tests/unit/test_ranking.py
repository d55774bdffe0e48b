"""Unit tests for rucio_rd.ranking with the demo's geography.

SPSRC in Granada (SODA), UKSRC at Harwell (no SODA), AUSSRC in Perth (SODA).
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import permutations

import pytest

from rucio_rd.model import (
    SODA_ASYNC,
    SODA_SYNC,
    Position,
    RankedReplica,
    Replica,
    Site,
    SiteCatalogue,
    SodaService,
    great_circle_km,
)
from rucio_rd.ranking import SORTS, NoSodaReplica, RankingError, choose, rank_replicas

ES, UK, AU = "SPSRC_STORAGE", "UKSRC_RAL_STORAGE", "AUSSRC_STORAGE"

APPLETON = Position(51.7, -1.3, "Appleton, GB")
MADRID = Position(40.42, -3.70, "Madrid, ES")


def soda(host: str) -> dict[str, SodaService]:
    return {
        "soda_sync": SodaService(SODA_SYNC, f"https://{host}:443/soda/sync", f"ivo://{host}/soda"),
        "soda_async": SodaService(SODA_ASYNC, f"https://{host}:443/soda/async",
                                  f"ivo://{host}/soda"),
    }


CATALOGUE = SiteCatalogue({
    ES: Site("SPSRC", Position(37.19, -3.60, "SPSRC"), **soda("spsrc.example")),
    UK: Site("UKSRC", Position(51.57, -1.31, "UKSRC")),
    AU: Site("AUSSRC", Position(-31.95, 115.86, "AUSSRC"), **soda("aussrc.example")),
})

REPLICAS = [
    Replica(AU, "https://storage.aussrc.example/disk/test/file.fits"),
    Replica(ES, "https://spsrc14.iaa.csic.es/disk/test/file.fits"),
    Replica(UK, "https://storage.uksrc.example/disk/test/file.fits"),
]


def rses(ranked: list[RankedReplica]) -> list[str]:
    return [item.replica.rse for item in ranked]


# --- nearest_by_client -----------------------------------------------------------


def test_client_at_appleton_ranks_uk_spain_australia():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    assert rses(ranked) == [UK, ES, AU]
    distances = [item.distance_km for item in ranked]
    assert distances == sorted(distances)
    assert distances[0] < 20
    assert ranked[0].site == CATALOGUE[UK]


def test_distances_are_great_circle_kilometres_to_the_site():
    ranked = rank_replicas(REPLICAS, CATALOGUE, MADRID)
    for item in ranked:
        assert item.distance_km == pytest.approx(great_circle_km(MADRID, item.site.position))


def test_must_include_soda_skips_sites_without_soda():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON, must_include_soda=True)
    assert rses(ranked) == [ES, AU]
    assert all(item.site.has_soda for item in ranked)


def test_client_in_madrid_gets_spain_first():
    assert rses(rank_replicas(REPLICAS, CATALOGUE, MADRID)) == [ES, UK, AU]


def test_order_does_not_depend_on_the_order_rucio_lists_replicas():
    for order in permutations(REPLICAS):
        assert rses(rank_replicas(list(order), CATALOGUE, APPLETON)) == [UK, ES, AU]


def test_equal_distances_are_broken_by_rse_name():
    here = Position(10.0, 10.0, "here")
    catalogue = SiteCatalogue({
        "B_RSE": Site("B", here), "A_RSE": Site("A", here), "C_RSE": Site("C", here),
    })
    replicas = [Replica(name, f"https://{name}/f") for name in ("C_RSE", "A_RSE", "B_RSE")]
    assert rses(rank_replicas(replicas, catalogue, Position(0, 0))) == ["A_RSE", "B_RSE", "C_RSE"]


def test_replicas_without_a_known_position_go_last_by_rse_name():
    catalogue = SiteCatalogue({**CATALOGUE, "NOWHERE_B": Site("NOWHERE", None)})
    replicas = [
        Replica("UNKNOWN_A", "https://a/f"),  # not in the catalogue at all
        Replica("NOWHERE_B", "https://b/f"),  # known site, no coordinates
        *REPLICAS,
    ]
    ranked = rank_replicas(replicas, catalogue, APPLETON)
    assert rses(ranked) == [UK, ES, AU, "NOWHERE_B", "UNKNOWN_A"]
    assert ranked[-1].site is None
    assert ranked[-1].distance_km is None
    assert ranked[-2].site.name == "NOWHERE"
    assert ranked[-2].distance_km is None


def test_no_client_position_orders_by_rse_name_without_distances():
    ranked = rank_replicas(REPLICAS, CATALOGUE, None)
    assert rses(ranked) == sorted([ES, UK, AU])
    assert all(item.distance_km is None for item in ranked)


def test_no_replicas_give_an_empty_list():
    assert rank_replicas([], CATALOGUE, APPLETON) == []
    assert rank_replicas([], CATALOGUE, APPLETON, must_include_soda=True) == []
    assert rank_replicas([], CATALOGUE, APPLETON, sort="random") == []


def test_must_include_soda_without_any_soda_site_names_the_rses():
    replicas = [Replica(UK, "https://uk/f"), Replica("UNKNOWN_RSE", "https://x/f")]
    with pytest.raises(NoSodaReplica, match="UKSRC_RAL_STORAGE") as caught:
        rank_replicas(replicas, CATALOGUE, APPLETON, must_include_soda=True)
    assert "UNKNOWN_RSE" in str(caught.value)


def test_unknown_sort_is_a_ranking_error_listing_the_choices():
    with pytest.raises(RankingError, match=f"sort='closest'.*{', '.join(SORTS)}"):
        rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="closest")


def test_sort_with_metacharacters_is_echoed_quoted():
    with pytest.raises(RankingError, match="is not supported"):
        rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random'; DROP TABLE x;--<b>")


def test_sorts_start_with_the_default():
    assert SORTS[0] == "nearest_by_client"


def test_two_replicas_on_the_same_rse_both_ranked():
    replicas = [Replica(ES, "https://es/b"), Replica(ES, "https://es/a")]
    ranked = rank_replicas(replicas, CATALOGUE, APPLETON)
    assert [item.replica.pfn for item in ranked] == ["https://es/a", "https://es/b"]


# --- choose ------------------------------------------------------------------------


def test_ranking_zero_is_the_nearest_then_the_rest():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    assert rses(choose(ranked)) == [UK, ES, AU]


def test_ranking_one_and_two_walk_outward():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    assert rses(choose(ranked, 1)) == [ES, UK, AU]
    assert rses(choose(ranked, 2)) == [AU, UK, ES]


def test_ranking_past_the_end_says_the_valid_range():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    with pytest.raises(RankingError, match=r"^ranking=3 but only 3 replicas; use 0\.\.2$"):
        choose(ranked, 3)
    with pytest.raises(RankingError, match=r"^ranking=7 but only 3 replicas; use 0\.\.2$"):
        choose(ranked, 7)


def test_ranking_past_the_end_of_one_replica():
    ranked = rank_replicas(REPLICAS[:1], CATALOGUE, APPLETON)
    with pytest.raises(RankingError, match=r"^ranking=1 but only 1 replicas; use 0\.\.0$"):
        choose(ranked, 1)


def test_ranking_of_nothing_is_a_ranking_error():
    with pytest.raises(RankingError, match="only 0 replicas"):
        choose([], 0)


def test_negative_ranking_is_a_ranking_error():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    with pytest.raises(RankingError, match=r"ranking=-1 is negative; use 0\.\.2"):
        choose(ranked, -1)


@pytest.mark.parametrize("bad", ["1", 1.0, None, True])
def test_non_integer_ranking_is_a_ranking_error(bad):
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON)
    with pytest.raises(RankingError, match="is not an integer"):
        choose(ranked, bad)  # type: ignore[arg-type]


def test_ranking_with_must_include_soda_indexes_the_soda_sites():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON, must_include_soda=True)
    assert rses(choose(ranked, 1)) == [AU, ES]
    with pytest.raises(RankingError, match=r"ranking=2 but only 2 replicas; use 0\.\.1"):
        choose(ranked, 2)


def test_ranking_errors_are_value_errors_and_no_soda_is_a_lookup_error():
    assert issubclass(RankingError, ValueError)
    assert issubclass(NoSodaReplica, LookupError)


# --- random -------------------------------------------------------------------------


def test_random_is_always_a_permutation_with_distances_filled_in():
    for seed in range(50):
        ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random",
                               rng=random.Random(seed))
        assert sorted(rses(ranked)) == sorted([ES, UK, AU])
        for item in ranked:
            assert item.distance_km == pytest.approx(
                great_circle_km(APPLETON, item.site.position))


def test_random_is_reproducible_with_a_seed_and_varies_across_seeds():
    def order(seed: int) -> tuple[str, ...]:
        return tuple(rses(rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random",
                                        rng=random.Random(seed))))

    assert order(7) == order(7)
    assert len({order(seed) for seed in range(40)}) > 1


def test_random_does_not_depend_on_the_order_rucio_lists_replicas():
    first = rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random", rng=random.Random(3))
    again = rank_replicas(REPLICAS[::-1], CATALOGUE, APPLETON, sort="random",
                          rng=random.Random(3))
    assert rses(first) == rses(again)


def test_random_first_choice_is_roughly_uniform():
    rng = random.Random(20240611)
    draws = 3000
    firsts = Counter(
        rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random", rng=rng)[0].replica.rse
        for _ in range(draws)
    )
    assert set(firsts) == {ES, UK, AU}
    # Expected 1000 each; a standard deviation is ~26, so 850..1150 is ~6 sigma.
    assert all(850 <= count <= 1150 for count in firsts.values()), firsts


def test_random_orders_are_roughly_uniform_over_all_permutations():
    rng = random.Random(42)
    draws = 3000
    orders = Counter(
        tuple(rses(rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random", rng=rng)))
        for _ in range(draws)
    )
    assert len(orders) == 6
    # Expected 500 each, standard deviation ~20: 400..600 is ~5 sigma.
    assert all(400 <= count <= 600 for count in orders.values()), orders


def test_random_with_must_include_soda_shuffles_only_soda_sites():
    seen = set()
    for seed in range(30):
        ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random",
                               must_include_soda=True, rng=random.Random(seed))
        seen.add(tuple(rses(ranked)))
    assert seen == {(ES, AU), (AU, ES)}


def test_random_without_rng_still_works():
    ranked = rank_replicas(REPLICAS, CATALOGUE, APPLETON, sort="random")
    assert sorted(rses(ranked)) == sorted([ES, UK, AU])


def test_random_without_client_has_no_distances():
    ranked = rank_replicas(REPLICAS, CATALOGUE, None, sort="random", rng=random.Random(1))
    assert all(item.distance_km is None for item in ranked)
