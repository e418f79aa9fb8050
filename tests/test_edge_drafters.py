"""Edge drafters of their own (shared_verifier's `edges` entries with a draft model and gamma) and
how a request picks one (`assign`), against runs worked out by hand on constant latencies."""

from __future__ import annotations

import math

import pytest
import yaml
from helpers import run, stderr_of
from typer.testing import CliRunner

from simulator.cli import app
from simulator.strategies.shared_verifier import EdgeTally, allocate, assign, gradient_score, jain, route


def fleet(edges, assign_policy="round_robin", requests=2, output=13, alpha=1.0, users=1, **draft_ms):
    profile = {"kind": "constant", "forward_ms": {"target": 10.0, **draft_ms}}
    devices = {"cloud": {"profile": profile}} | {f"e{i}": {"profile": profile} for i in range(len(edges))}
    return {
        "name": "fleet", "seed": 3,
        "models": {"target": {"preset": "llama2-7b"}, "d1": {"preset": "llama-68m"}, "d2": {"preset": "llama-160m"}},
        "devices": devices,
        "links": [{"a": f"e{i}", "b": "cloud", "bandwidth_mbps": float("inf")} for i in range(len(edges))],
        "strategy": {"kind": "shared_verifier", "draft_model": "d1", "edges": edges, "gamma": 3,
                     "target": {"model": "target", "device": "cloud"}, "assign": assign_policy, "max_batch": 1},
        "acceptance": {"kind": "iid", "alpha": alpha},
        "workload": {"arrival": {"kind": "closed_loop", "users": users}, "requests": requests,
                     "prompt_tokens": 16, "output_tokens": output},
    }


def test_each_edge_drafts_with_its_own_model_and_gamma():
    # every draft accepted; 13 tokens: the prefill's, then 12 in steps of gamma + 1, the last cut short.
    # edge 0 (d1, 1 ms, gamma 2): prefills 1 + 10 ms, 4 steps of 2 x 1 + 10 ms: 59 ms.
    # edge 1 (d2, 3 ms, gamma 4): prefills 3 + 10 ms, steps of 4, 4 and 1 drafts: 22 + 22 + 13 ms: 70 ms.
    data = fleet([{"device": "e0", "gamma": 2}, {"device": "e1", "draft_model": "d2", "gamma": 4}], d1=1.0, d2=3.0)
    rep, result = run(data)
    assert rep["simulated_s"] == pytest.approx(0.059 + 0.070)
    assert [r.steps for r in result.records] == [4, 3]
    assert rep["tokens_per_step"] == pytest.approx(24 / 7)
    edges = rep["fleet"]["edges"]
    assert (edges["0"]["gamma"], edges["1"]["gamma"], edges["1"]["draft_model"]) == (2, 4, "d2")
    assert edges["0"]["goodput_tokens_per_s"] == pytest.approx(13 / 0.059)
    assert edges["1"]["goodput_tokens_per_s"] == pytest.approx(13 / 0.070)
    assert rep["devices"]["e0"]["busy_s"] == pytest.approx(0.001 + 4 * 0.002)
    assert rep["devices"]["e1"]["busy_s"] == pytest.approx(0.003 + 9 * 0.003)


def test_plain_device_names_keep_the_strategys_model_and_gamma():
    rep, result = run(fleet(["e0"], requests=1, d1=1.0))  # gamma 3: 12 tokens in 3 steps of 4
    assert [r.steps for r in result.records] == [3]
    assert rep["simulated_s"] == pytest.approx(0.011 + 3 * 0.013)
    assert rep["fleet"]["edges"]["0"] == {"device": "e0", "draft_model": "d1", "gamma": 3, "requests": 1,
                                          "output_tokens": 13, "goodput_tokens_per_s": pytest.approx(13 / 0.050)}


def test_learned_assignment_tries_each_edge_then_keeps_the_faster():
    data = fleet(["e0", {"device": "e1", "draft_model": "d2"}], "learned", requests=10, alpha=0.8, d1=1.0, d2=30.0)
    rep, _ = run(data)
    edges = rep["fleet"]["edges"]
    assert (edges["0"]["requests"], edges["1"]["requests"]) == (9, 1)


def test_assignment_rules():
    class R:
        def __init__(self, id, user):
            self.id, self.user = id, user

    fast, slow, none = EdgeTally(), EdgeTally(), EdgeTally()
    fast.add(100, 1.0)
    slow.add(100, 4.0)
    assert assign("user", R(5, 3), [fast, slow], 0) == 1 and assign("round_robin", R(5, 3), [fast, slow], 0) == 1
    assert [assign("learned", R(i, 0), [none, none, none], i) for i in range(3)] == [0, 1, 2]  # each tried once
    assert assign("learned", R(7, 0), [slow, fast, none], 7) == 1  # then the best so far
    assert assign("learned", R(7, 0), [none, none], 7) == 1  # nothing finished yet: round robin
    tie = EdgeTally()
    tie.add(100, 1.0)
    assert assign("learned", R(7, 0), [slow, fast, tie], 7) == 1  # ties: the first


def test_jains_index():
    assert jain([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain([1.0, 3.0]) == pytest.approx(16 / 20)
    assert jain([5.0, 0.0, 0.0, 0.0]) == pytest.approx(1 / 4)
    assert jain([]) is None


def verifiers_fleet(n_verifiers, router="round_robin", users=4, edges=None, output=401, requests=None):
    data = fleet(edges or [f"e{i}" for i in range(users)], requests=requests or users, output=output, users=users,
                 d1=0.01)
    for j in range(1, n_verifiers):
        data["devices"][f"cloud{j}"] = {"profile": {"kind": "constant", "forward_ms": {"target": 10.0}}}
        data["strategy"].setdefault("verifiers", []).append({"model": "target", "device": f"cloud{j}"})
        data["links"] += [{"a": f"e{i}", "b": f"cloud{j}", "bandwidth_mbps": float("inf")}
                          for i in range(len(data["strategy"]["edges"]))]
    data["strategy"]["router"] = router
    return data


def test_a_second_verifier_doubles_a_verifier_bound_fleet():
    # drafts nearly free, every one accepted, batches of one: a verifier makes gamma + 1 = 4 tokens per
    # 10 ms forward; four users keep one verifier busy, and two verifiers twice as busy in all
    one, _ = run(verifiers_fleet(1))
    two, _ = run(verifiers_fleet(2))
    assert one["throughput_tokens_per_s"] == pytest.approx(400, rel=0.01)
    assert two["throughput_tokens_per_s"] == pytest.approx(800, rel=0.01)
    assert [v["requests"] for v in two["fleet"]["verifiers"].values()] == [2, 2]
    assert two["devices"]["cloud"]["utilization"] == pytest.approx(1.0, abs=0.01)
    assert two["devices"]["cloud1"]["utilization"] == pytest.approx(1.0, abs=0.01)


def test_an_edge_sends_only_to_the_verifiers_it_reaches(tmp_path):
    data = verifiers_fleet(2, "jsq", users=2, edges=[{"device": "e0", "reach": [1]}, {"device": "e1", "reach": [0]}],
                           output=41, requests=6)
    rep, _ = run(data)
    fleet = rep["fleet"]
    assert [fleet["verifiers"][j]["requests"] for j in "01"] == [fleet["edges"][i]["requests"] for i in "10"]
    data["strategy"]["edges"][0]["reach"] = [2]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "strategy.edges.0.reach" in stderr_of(res) and "0 (target) to 1" in stderr_of(res)


def test_routing_draws_change_nothing_else():
    a, ra = run(verifiers_fleet(3, "random", users=3, output=41, requests=9))
    b, rb = run(verifiers_fleet(3, "power_of_two", users=3, output=41, requests=9))
    assert [r.output_tokens for r in ra.records] == [r.output_tokens for r in rb.records]
    assert sum(v["requests"] for v in a["fleet"]["verifiers"].values()) == 9
    again, _ = run(verifiers_fleet(3, "random", users=3, output=41, requests=9))
    assert again == a | {"sim": again["sim"]}  # seeded: the same run again


def test_router_rules():
    class R:
        id = 5

    class Two:  # a generator that always draws verifiers 2 and 0
        def choice(self, n, size, replace):
            return [2, 0]

    assert route("round_robin", R(), [0, 0, 0], None) == 2
    assert route("jsq", R(), [3, 1, 1], None) == 1  # fewest in progress, the first of a tie
    assert route("power_of_two", R(), [1, 0, 4], Two()) == 0  # the fewer of verifiers 2 and 0
    assert route("random", R(), [9], None) == 0  # one reachable: no draw


def test_the_proportional_scheduler_gives_each_edge_an_equal_share_of_the_verifier():
    # solved by hand: drafts nearly free, every draft accepted (4 tokens a 10 ms verification, 200
    # verifications a request of 801 tokens), batches of one, the verifier always busy. Edge 0
    # serves users 0 and 2, edge 1 user 1. Maximising log x0 + log x1 (x_e = 400 tokens/s x edge e's
    # share of the verifier) gives each edge half: user 1 is done after 400 verifications' time
    # (4 s), when users 0 and 2 have made 100 each; their last 200 take 2 s more. First come first
    # served gives each user a third: all three are done at 6 s. Both after the three prefills
    # (30 ms), and within two verifications (20 ms) of the order the users take turns in.
    def finishes(policy):
        data = fleet(["e0", "e1"], "user", requests=3, output=801, users=3, d1=0.0001)
        data["strategy"]["policy"] = policy
        _, result = run(data)
        return {r.user: r.finish_s for r in result.records}

    fcfs, proportional = finishes("fcfs"), finishes("proportional")
    slot = 0.0201
    assert [fcfs[u] for u in range(3)] == pytest.approx([6.03] * 3, abs=slot)
    assert proportional[1] == pytest.approx(4.03, abs=slot)
    assert [proportional[0], proportional[2]] == pytest.approx([6.03, 6.03], abs=slot)


def test_gradient_scores():
    assert gradient_score(4.0, 0, 1.0) == math.inf  # an edge with nothing yet comes first
    assert gradient_score(4.0, 200, 1.0) == pytest.approx(0.02)
    assert gradient_score(4.0, 100, 1.0) > gradient_score(4.0, 200, 1.0)  # the poorer edge first
    assert gradient_score(5.0, 200, 1.0) > gradient_score(4.0, 200, 1.0)  # then the richer verification


def _poisson_fleet(verifiers: int, router: str, rate_per_s: float, requests: int = 4000):
    data = verifiers_fleet(verifiers, router, users=1, output=41, requests=requests)
    data["workload"] = {"arrival": {"kind": "poisson", "rate_per_s": rate_per_s}, "requests": requests,
                        "prompt_tokens": 16, "output_tokens": 41}
    rep, result = run(data)
    return sum(r.finish_s - r.arrival_s for r in result.records) / len(result.records)


@pytest.mark.slow  # 16,000 requests: about 5 s
def test_routing_against_queueing_theory():
    # Drafts nearly free, every draft accepted, batches of one: a verifier takes its requests'
    # verifications in turn, 10 ms each, so it is a processor-sharing queue (round robin in quanta of
    # 10 ms). A request needs S = 10 ms of prefill + 10 verifications = 110 ms. Poisson arrivals split
    # at random make each verifier an M/G/1-PS queue, whose mean time in the system is S / (1 - rho)
    # whatever the distribution (rho = rate x S per verifier: 0.495 here): 217.8 ms. Routing that
    # looks (join the shortest queue) or alternates (round robin) can only do better.
    s, rate = 0.110, 4.5
    theory = s / (1 - rate * s)
    one = _poisson_fleet(1, "random", rate)
    two_random = _poisson_fleet(2, "random", 2 * rate)
    assert one == pytest.approx(theory, rel=0.03)
    assert two_random == pytest.approx(theory, rel=0.05)
    assert _poisson_fleet(2, "jsq", 2 * rate) < 0.8 * two_random
    assert _poisson_fleet(2, "round_robin", 2 * rate) < 0.8 * two_random


def test_auto_gamma_is_the_best_step_of_each_edge_alone():
    # constant latencies, free links, iid alpha 0.8: an edge's step of g drafts makes
    # (1 - 0.8^(g+1)) / 0.2 tokens in g x draft ms + 10 ms; the best g by brute force per edge
    def best(draft_ms, cap=8):
        rates = [(1 - 0.8 ** (g + 1)) / 0.2 / (g * draft_ms + 10) for g in range(cap + 1)]
        return max(range(cap + 1), key=lambda g: (rates[g], -g))

    data = fleet([{"device": "e0", "gamma": "auto"}, {"device": "e1", "draft_model": "d2", "gamma": "auto"}],
                 requests=2, alpha=0.8, d1=0.3, d2=3.0)
    data["strategy"]["gamma"] = 8
    rep, _ = run(data)
    got = [rep["fleet"]["edges"][i]["gamma"] for i in "01"]
    assert got == [best(0.3), best(3.0)] and got[0] > got[1]  # the faster drafter drafts further


def test_each_edge_draws_from_its_own_acceptance():
    # edge 0 (alpha 1) has every draft accepted: 12 tokens in 3 steps of 4; edge 1 (alpha 0) none:
    # one token a step, 12 steps, whatever the scenario's alpha 0.5 would give
    data = fleet([{"device": "e0", "alpha": 1.0}, {"device": "e1", "alpha": 0.0}], "user", requests=2, users=2,
                 alpha=0.5, d1=1.0)
    _, result = run(data)
    by_user = {r.user: r for r in result.records}
    assert (by_user[0].steps, by_user[0].accepted) == (3, 9)
    assert (by_user[1].steps, by_user[1].accepted) == (12, 0)


def iid_tokens(a, g):
    return (1 - a ** (g + 1)) / (1 - a)  # E[accepted + 1] with g drafts at acceptance a


def test_allocate_gives_each_token_to_the_largest_weighted_gain():
    gains = [[0.9, 0.81, 0.729], [0.5, 0.25, 0.125]]  # P(K >= g + 1) at alpha 0.9 and 0.5
    assert allocate([1.0, 1.0], gains, 2) == [0, 0]  # the two verifications' own tokens use it all
    assert allocate([1.0, 1.0], gains, 4) == [2, 0]  # 0.9, 0.81 before 0.5
    assert allocate([1.0, 2.0], gains, 4) == [1, 1]  # 0.9, then 2 x 0.5 = 1.0 before 0.81
    assert allocate([1.0, 1.0], gains, 99) == [3, 3]  # each capped at its gamma (the length of its gains)
    assert allocate([1.0, math.inf], gains, 4) == [0, 2]  # an edge with nothing yet first
    assert allocate([1.0, 1.0], [[0.9, 0.0], [0.0]], 9) == [1, 0]  # no token where it adds nothing


# Hand-solved two-edge case (GoodSpeed's allocation): acceptance 0.9 and 0.5, a verifier of 4
# tokens a round, so g0 + g1 <= 2. A round's expected tokens f(g) = (1 - a^(g+1)) / (1 - a):
# (g0, g1) = (2, 0) gives (2.71, 1), (1, 1) gives (1.9, 1.5), (0, 2) gives (1, 1.75). The largest
# log x0 + log x1 over their convex hull lies on the segment from (1.9, 1.5) to (2.71, 1):
# x = (1.9 + 0.81 l, 1.5 - 0.5 l), where 0.81 / x0 = 0.5 / x1, so l = 0.265 / 0.81 = 0.3272 and
# x = (2.165, 1.3364): rounds of (2, 0) a third of the time, (1, 1) the rest; mean draft lengths
# (1 + l, 1 - l) = (1.327, 0.673). No vertex reaches it: (1, 1) alone gives log 2.85, the
# proportional-fair point log 2.893.
PF_TOKENS = (2.165, 1.5 - 0.5 * 0.265 / 0.81)
PF_GAMMAS = (1 + 0.265 / 0.81, 1 - 0.265 / 0.81)


def test_the_gradient_allocation_converges_to_the_proportional_fair_point():
    gains = [[iid_tokens(a, g + 1) - iid_tokens(a, g) for g in range(3)] for a in (0.9, 0.5)]
    tokens, rounds = [0.0, 0.0], 20000
    for _ in range(rounds):  # each round on its expected tokens, weights 1 / tokens so far
        g = allocate([1 / t if t else math.inf for t in tokens], gains, 4)
        tokens = [tokens[0] + iid_tokens(0.9, g[0]), tokens[1] + iid_tokens(0.5, g[1])]
    assert [t / rounds for t in tokens] == pytest.approx(PF_TOKENS, rel=1e-3)


@pytest.mark.parametrize("seed", [3, 4])
def test_the_goodspeed_verifier_converges_to_the_proportional_fair_point(seed):
    # the case above in a run: drafts nearly free, free links, 10 ms a round whatever its size, one
    # user per edge drafting requests of 401 tokens for 60 s (about 6000 rounds); goodput x 10 ms is
    # tokens a round, less a little for each request's prefill (10 ms of 4 s)
    data = fleet([{"device": "e0", "alpha": 0.9}, {"device": "e1", "alpha": 0.5}], "user", output=401, users=2,
                 d1=0.0001)
    data["seed"] = seed
    del data["workload"]["requests"]
    data["workload"]["duration_s"] = 60
    data["strategy"].update(policy="goodspeed", verify_tokens=4, max_batch=2)
    rep, _ = run(data)
    edges = rep["fleet"]["edges"]
    per_round = [edges[i]["goodput_tokens_per_s"] * 0.010 for i in "01"]
    assert per_round == pytest.approx(PF_TOKENS, rel=0.015)
    assert [edges[i]["mean_gamma"] for i in "01"] == pytest.approx(PF_GAMMAS, abs=0.03)
    data["strategy"]["policy"] = "fcfs"  # without the allocation each edge drafts its gamma (3)
    edges = run(data)[0]["fleet"]["edges"]
    assert "mean_gamma" not in edges["0"]



def test_allocate_maximises_the_weighted_expected_tokens_of_the_round():
    """Against every allocation within the budget and the caps (brute force, small rounds): the
    greedy's sum of weights[i] x E[tokens_i](g_i) is the largest, as the gains never rise with g."""
    import itertools
    import random

    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(1, 4)
        weights = [rng.choice([0.5, 1.0, 2.0, rng.random() + 0.01]) for _ in range(n)]
        alphas = [rng.choice([0.0, 0.5, 0.9, rng.random()]) for _ in range(n)]
        gains = [[a ** (k + 1) for k in range(rng.randint(0, 5))] for a in alphas]  # P(K >= k + 1), iid
        budget = rng.randint(n, n + 12)

        def value(g):
            return sum(w * sum(row[:k]) for w, row, k in zip(weights, gains, g))

        best = max(value(g) for g in itertools.product(*[range(len(row) + 1) for row in gains])
                   if sum(g) + n <= budget)
        got = allocate(weights, gains, budget)
        assert sum(got) + n <= budget and all(k <= len(row) for k, row in zip(got, gains))
        assert value(got) == pytest.approx(best, rel=1e-12, abs=1e-12)
