"""Who may talk to the bridge (bridge/contract/access.py): the allowlist and the shared secret."""

from __future__ import annotations

from bridge.contract.access import allowed, take_token
from bridge.settings import parse_networks


def test_no_allowlist_allows_everyone() -> None:
    assert allowed("203.0.113.9", []) and allowed("not an address", [])


def test_the_allowlist_matches_networks_and_hosts() -> None:
    networks = parse_networks(["192.168.1.0/24", "10.0.0.7", "fd00::/8"])
    assert allowed("192.168.1.200", networks) and allowed("10.0.0.7", networks) and allowed("fd00::1", networks)
    assert not allowed("192.168.2.1", networks) and not allowed("10.0.0.8", networks)
    assert not allowed("fe80::1", networks)


def test_mapped_and_scoped_addresses_and_garbage() -> None:
    networks = parse_networks(["192.168.1.0/24", "fe80::/10"])
    assert allowed("::ffff:192.168.1.5", networks)  # an IPv4 client on a dual-stack socket
    assert not allowed("::ffff:192.168.2.5", networks)
    assert allowed("fe80::1%eth0", networks)  # the scope id is not part of the address
    assert allowed("192.168.1.5%eth0", networks)  # whatever follows a "%" is dropped, for IPv4 too
    assert not allowed("büro-pc", networks) and not allowed("", networks)


def test_the_token_is_taken_off_the_end_only_when_it_matches() -> None:
    assert take_token(("a prompt", "seed", 3, "token", "s3cret"), "s3cret") == (True, ("a prompt", "seed", 3))
    assert take_token(("a prompt", "token", "wrong"), "s3cret") == (False, ("a prompt",))
    assert take_token(("a prompt", "token", 5), "s3cret") == (False, ("a prompt", "token", 5))  # not a string
    assert take_token(("a prompt", "seed", "s3cret"), "s3cret") == (False, ("a prompt", "seed", "s3cret"))
    assert take_token(("token",), "s3cret") == (False, ("token",))
    assert take_token((), "s3cret") == (False, ())
    assert take_token(("token", "s3cret"), "s3cret") == (True, ())
