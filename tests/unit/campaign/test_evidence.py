"""Proof that a fault fired: a spent count with its outcome logged passes; a fault that did not fire fails."""

from __future__ import annotations

from campaign.evidence import Answer, Proof, SimulatorTrace, fired_verdict, simulator_proofs

LATENCY = {"latency_ms": 300}


def trace(residual, fired, answers=(), notices=None, changed=0) -> SimulatorTrace:
    return SimulatorTrace(
        residual={"*": {**LATENCY, **residual}},
        fired=fired,
        answers=list(answers),
        notices=notices or {},
        keys_changed_by_properties=changed,
    )


def only(proofs: list[Proof]) -> Proof:
    [proof] = proofs
    return proof


def test_a_spent_count_with_its_outcome_in_the_request_log_fired() -> None:
    proof = only(
        simulator_proofs(trace({"drop_connection": 0}, {"drop_connection": 4}, [Answer("dropped")] * 4))
    )
    assert proof.fired and proof.evidence == "fired 4×, 4 requests dropped with their socket"


def test_a_count_left_unused_did_not_fire() -> None:
    proof = only(simulator_proofs(trace({"drop_connection": 2}, {}, [Answer("bars:5")])))
    assert not proof.fired and "2 left unused" in proof.evidence


def test_a_count_partly_spent_did_not_fire_as_injected() -> None:
    proof = only(
        simulator_proofs(
            trace({"no_data": 1}, {"no_data": 1}, [Answer("error:162", 162, "HMDS query returned no data")])
        )
    )
    assert not proof.fired


def test_a_fault_that_fired_without_its_outcome_did_not_prove_it() -> None:
    # The counter ran down, but no request ended dropped: the fault did not do what it says.
    proof = only(
        simulator_proofs(trace({"drop_connection": 0}, {"drop_connection": 2}, [Answer("bars:5")] * 2))
    )
    assert not proof.fired


def test_connectivity_faults_prove_themselves_by_the_notices_sent() -> None:
    kept = trace({"connectivity_lost": 0}, {"connectivity_lost": 1}, notices={1100: 3, 1102: 3})
    assert only(simulator_proofs(kept)).fired
    no_restore = trace({"connectivity_lost": 0}, {"connectivity_lost": 1}, notices={1100: 3})
    assert not only(simulator_proofs(no_restore)).fired
    lost = trace(
        {"connectivity_lost_data_lost": 0},
        {"connectivity_lost_data_lost": 1},
        [Answer("lost")],
        notices={1100: 1, 1101: 1},
    )
    assert only(simulator_proofs(lost)).fired
    nothing_lost = trace(
        {"connectivity_lost_data_lost": 0}, {"connectivity_lost_data_lost": 1}, notices={1100: 1, 1101: 1}
    )
    assert not only(simulator_proofs(nothing_lost)).fired


def test_a_switch_left_on_fired_only_if_it_was_met_and_every_farm_notice_was_sent() -> None:
    codes = (2103, 2105, 2157, 2104, 2106, 2158, 2107)
    met = trace({"farm_notices": True}, {"farm_notices": 2}, notices={code: 2 for code in codes})
    assert only(simulator_proofs(met)).fired
    never_met = trace({"farm_notices": True}, {})
    assert not only(simulator_proofs(never_met)).fired
    one_missing = trace({"farm_notices": True}, {"farm_notices": 2}, notices={code: 2 for code in codes[:-1]})
    assert not only(simulator_proofs(one_missing)).fired


def test_a_market_property_fired_when_it_changed_a_covered_session() -> None:
    assert only(simulator_proofs(trace({"illiquid_sessions": [1]}, {}, changed=3))).fired
    assert not only(simulator_proofs(trace({"illiquid_sessions": [1]}, {}, changed=0))).fired


def test_latency_needs_no_proof_and_a_fault_unknown_here_needs_only_to_have_fired() -> None:
    assert simulator_proofs(trace({}, {})) == []
    assert only(
        simulator_proofs(trace({"bars_out_of_order": 0}, {"bars_out_of_order": 1}, [Answer("bars:3")]))
    ).fired


def test_a_scenario_fired_only_when_every_proof_did_and_an_injection_without_one_did_not() -> None:
    assert fired_verdict([], [""]) == (True, "nothing injected")
    assert fired_verdict([], ["SIGKILL to a process"])[0] is False
    yes, no = Proof("a", True, "seen"), Proof("b", False, "not seen")
    assert fired_verdict([yes], ["x"]) == (True, "a: seen")
    assert fired_verdict([yes, no], ["x"])[0] is False


def test_ibs_queue_fired_when_an_answer_waited_as_if_two_requests_were_open() -> None:
    queued = SimulatorTrace(
        residual={"*": {**LATENCY, "latency_per_open_request_ms": 200}},
        fired={},
        answers=[Answer("bars:5", waited=0.35), Answer("bars:5", waited=0.72)],
        notices={},
    )
    assert only(simulator_proofs(queued)).fired
    alone = SimulatorTrace(queued.residual, {}, [Answer("bars:5", waited=0.5)], {})
    assert not only(simulator_proofs(alone)).fired
