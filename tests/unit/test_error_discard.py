"""error(8), retry and discard(8): the nexthop text is the reason."""

from __future__ import annotations

import pytest

from mailcore.config.master import parse_master_cf
from mailcore.delivery.discard import DiscardAgent
from mailcore.delivery.error import ErrorAgent, split_status
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef


def request(nexthop: str, count: int = 2) -> DeliveryRequest:
    rcpts = tuple(RecipientRef(seq, f"r{seq}@example.com") for seq in range(1, count + 1))
    return DeliveryRequest(queue_id="Q1", sender="s@x", recipients=rcpts, transport="error",
                           nexthop=nexthop, size=10, arrival_time=0.0)


def outcomes(result) -> set[tuple]:  # type: ignore[no-untyped-def]
    return {(r.status, r.dsn, r.reason, r.relay) for r in result.recipients}


@pytest.mark.parametrize("text, parsed", [
    ("5.1.1 mailbox unavailable", ("5.1.1", "mailbox unavailable")),
    ("  4.7.10   try later ", ("4.7.10", "try later")),
    ("5.1.1\tx", ("5.1.1", "x")),
    ("5.1.1", ("5.1.1", "")),
    ("5.1 no", ("9.9.9", "5.1 no")),
    ("6.1.1 no", ("9.9.9", "6.1.1 no")),
    ("5.1.1000 no", ("9.9.9", "5.1.1000 no")),
    ("plain words", ("9.9.9", "plain words")),
])
def test_split_status(text: str, parsed: tuple[str, str]) -> None:
    assert split_status(text, "9.9.9") == parsed


async def test_error_bounces_every_recipient() -> None:
    result = await ErrorAgent().deliver(request("mail for this domain is refused"))
    assert [r.seq for r in result.recipients] == [1, 2]
    assert outcomes(result) == {(BOUNCED, "5.0.0", "mail for this domain is refused", "none")}


async def test_error_takes_the_code_from_the_text_but_never_a_4xx() -> None:
    result = await ErrorAgent().deliver(request("5.1.1 user unknown"))
    assert outcomes(result) == {(BOUNCED, "5.1.1", "user unknown", "none")}
    wrong = await ErrorAgent().deliver(request("4.2.2 full"))
    assert outcomes(wrong) == {(BOUNCED, "5.0.0", "full", "none")}


async def test_retry_defers() -> None:
    agent = ErrorAgent(retry=True)
    assert outcomes(await agent.deliver(request("maintenance"))) == {
        (DEFERRED, "4.0.0", "maintenance", "none")}
    assert outcomes(await agent.deliver(request("4.3.2 system down"))) == {
        (DEFERRED, "4.3.2", "system down", "none")}
    assert outcomes(await agent.deliver(request("5.1.1 nope"))) == {
        (DEFERRED, "4.0.0", "nope", "none")}


async def test_empty_nexthop_defers_as_configuration_error() -> None:
    for agent in (ErrorAgent(), ErrorAgent(retry=True), DiscardAgent()):
        assert outcomes(await agent.deliver(request("  "))) == {
            (DEFERRED, "4.3.5", "mail system configuration error", "none")}


def test_error_agent_for_service_names() -> None:
    master = parse_master_cf("error unix - - n - - error\nretry unix - - n - - error\n"
                             "oops unix - - n - - error\n", "master.cf")
    assert ErrorAgent.for_service(master.get("error", "unix")) == ErrorAgent(retry=False)
    assert ErrorAgent.for_service(master.get("retry", "unix")) == ErrorAgent(retry=True)
    assert ErrorAgent.for_service("retry").retry
    with pytest.raises(ConfigError) as caught:
        ErrorAgent.for_service(master.get("oops", "unix"))
    assert caught.value.line == 3 and '"oops"' in caught.value.message


async def test_discard_marks_sent_with_the_text() -> None:
    result = await DiscardAgent().deliver(request("example.com", count=3))
    assert [r.seq for r in result.recipients] == [1, 2, 3]
    assert outcomes(result) == {(SENT, "2.0.0", "example.com", "none")}
    coded = await DiscardAgent().deliver(request("2.7.1 dropped by policy"))
    assert outcomes(coded) == {(SENT, "2.7.1", "dropped by policy", "none")}
    wrong = await DiscardAgent().deliver(request("5.7.1 not a failure"))
    assert outcomes(wrong) == {(SENT, "2.0.0", "not a failure", "none")}
