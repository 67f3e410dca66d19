"""local(8) logs each final destination of an expanded recipient on its own line: the agent
keeps them in RecipientResult.destinations (the overall outcome still decides the queue)."""

from mailcore.delivery.local import fold
from mailcore.delivery.local.expand import Run
from mailcore.model import Destination


def run_with(*outcomes: tuple[str, str, str]) -> Run:
    run = Run()
    for address, dsn, text in outcomes:
        run.current = address
        run.record(dsn, text)
    return run


def test_plain_delivery_has_no_destination_lines():
    result = fold(1, run_with(("bob@mx.test", "2.0.0", "delivered to mailbox")), "bob@mx.test")
    assert result.destinations == ()
    assert (result.status, result.reason) == ("sent", "delivered to mailbox")


def test_alias_expansion_keeps_every_destination_and_the_worst_outcome():
    result = fold(1, run_with(("alice@mx.test", "2.0.0", "delivered to maildir"),
                              ("postmaster@mx.test", "4.3.0", "cannot write /var/log/x")),
                  "postmaster@mx.test")
    assert result.status == "deferred" and result.dsn == "4.3.0"
    assert result.destinations == (
        Destination("alice@mx.test", "sent", "2.0.0", "delivered to maildir"),
        Destination("postmaster@mx.test", "deferred", "4.3.0", "cannot write /var/log/x"),
    )


def test_single_destination_other_than_the_recipient_is_kept():
    result = fold(1, run_with(("alice@mx.test", "2.0.0", "delivered to maildir")),
                  "postmaster@mx.test")
    assert result.destinations == (
        Destination("alice@mx.test", "sent", "2.0.0", "delivered to maildir"),)
