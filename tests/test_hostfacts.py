"""Tests of host facts: arch names, hostname, machine id and the primary IP."""

import ipaddress
import platform
import socket
import sys
from pathlib import Path

import pytest

from jibrild.hostfacts import (
    default_route_interface,
    find_primary_ip,
    global_ipv6_address,
    go_arch,
    interface_ipv4_address,
    parse_ipv4_routes,
    parse_ipv6_routes,
    read_host_facts,
    read_hostname,
    read_machine_id,
)

# /proc/self/net/route as a little-endian kernel writes it, padding included.
# wlan0 and eth0 both have a default route, and eth0's metric is lower.
IPV4_ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU"
    "\tWindow\tIRTT                                                       \n"
    "wlan0\t00000000\t0164A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0"
    "                                                                               \n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0"
    "                                                                               \n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0"
    "                                                                               \n"
    "wlan0\t0064A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0"
    "                                                                               \n"
)

IPV4_HEADER_ONLY = IPV4_ROUTES.splitlines(keepends=True)[0]

# /proc/self/net/ipv6_route with a default route on eth0 and the kernel's reject
# default route on lo, which has no RTF_UP flag.
IPV6_ROUTES = (
    "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)

# /proc/self/net/if_inet6: address, ifindex, prefix length, scope, flags, name.
IF_INET6 = (
    "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"
    "20010db8000000000000000000000099 04 40 00 01     eth0\n"
    "20010db8000000000000000000000002 04 40 00 80     eth0\n"
    "00000000000000000000000000000001 01 80 10 80       lo\n"
)

little_endian_only = pytest.mark.skipif(
    sys.byteorder != "little",
    reason="the route fixtures are what a little-endian kernel writes",
)


def write(root: Path, relative: str, content: str) -> Path:
    """Create a file under the fixture root, with its parent folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


class FakeInterfaces:
    """Interface address table that records each lookup."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses
        self.requested: list[str] = []

    def __call__(self, interface: str) -> str | None:
        self.requested.append(interface)
        return self.addresses.get(interface)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "amd64"),
        ("amd64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "arm"),
        ("armv6l", "arm"),
        ("i386", "386"),
        ("i686", "386"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
        ("mips64", "mips64"),
        ("", ""),
    ],
)
def test_go_arch_table(machine: str, expected: str) -> None:
    """Machine names map to Go's names, and unknown names pass unchanged."""
    assert go_arch(machine) == expected


@little_endian_only
def test_parse_ipv4_routes_fields() -> None:
    """Route lines decode to interface, network, gateway, flags and metric."""
    routes = parse_ipv4_routes(IPV4_ROUTES)

    assert len(routes) == 4
    default = routes[1]
    assert default.interface == "eth0"
    assert default.destination == ipaddress.IPv4Network("0.0.0.0/0")
    assert default.gateway == ipaddress.IPv4Address("192.0.2.1")
    assert default.flags == 0x0003
    assert default.metric == 100
    assert routes[2].destination == ipaddress.IPv4Network("192.0.2.0/24")
    assert routes[0].gateway == ipaddress.IPv4Address("192.168.100.1")


def test_parse_ipv4_routes_malformed() -> None:
    """Short or non-hex lines are skipped, and the header never counts."""
    text = IPV4_HEADER_ONLY + "eth0\t00000000\n" + "eth0\tzz\t00\t0003\t0\t0\t0\t00\n"

    assert parse_ipv4_routes(text) == []
    assert parse_ipv4_routes("") == []


def test_ipv4_default_lowest_metric() -> None:
    """The default route with the lowest metric wins."""
    assert default_route_interface(IPV4_ROUTES, 4) == "eth0"


def test_ipv4_default_skips_down_and_reject() -> None:
    """Routes without RTF_UP or with RTF_REJECT are not defaults."""
    text = (
        IPV4_HEADER_ONLY
        + "eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
        + "eth1\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n"
        + "eth2\t00000000\t010200C0\t0003\t0\t0\t900\t00000000\t0\t0\t0\n"
    )

    assert default_route_interface(text, 4) == "eth2"


def test_ipv4_no_default_route() -> None:
    """A table with only subnet routes has no default interface."""
    text = IPV4_HEADER_ONLY + "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"

    assert default_route_interface(text, 4) is None
    assert default_route_interface(IPV4_HEADER_ONLY, 4) is None


def test_parse_ipv6_routes_fields() -> None:
    """IPv6 route lines decode with hex metric and flags."""
    routes = parse_ipv6_routes(IPV6_ROUTES)

    assert len(routes) == 3
    default = routes[1]
    assert default.interface == "eth0"
    assert default.destination == ipaddress.IPv6Network("::/0")
    assert default.gateway == ipaddress.IPv6Address("fd00::1")
    assert default.metric == 0x400
    assert default.flags == 0x3
    assert routes[0].destination == ipaddress.IPv6Network("fd00::/64")


def test_ipv6_default_skips_reject() -> None:
    """The kernel's reject route on lo is not a default route."""
    assert default_route_interface(IPV6_ROUTES, 6) == "eth0"
    assert default_route_interface(IPV6_ROUTES.splitlines()[2], 6) is None


def test_global_ipv6_address_choice() -> None:
    """A stable global address wins over link-local and temporary ones."""
    assert global_ipv6_address(IF_INET6, "eth0") == "2001:db8::2"


def test_global_ipv6_address_skips_unusable() -> None:
    """Tentative, deprecated and failed addresses are skipped."""
    text = (
        "20010db8000000000000000000000001 04 40 00 40     eth0\n"
        "20010db8000000000000000000000002 04 40 00 20     eth0\n"
        "20010db8000000000000000000000003 04 40 00 08     eth0\n"
        "fe800000000000000000000000000001 04 40 20 80     eth0\n"
    )

    assert global_ipv6_address(text, "eth0") is None
    assert global_ipv6_address(IF_INET6, "eth1") is None


def test_primary_ip_from_ipv4_route(tmp_path: Path) -> None:
    """The address of the IPv4 default route's interface is the primary IP."""
    write(tmp_path, "proc/self/net/route", IPV4_ROUTES)
    interfaces = FakeInterfaces({"eth0": "192.0.2.10", "wlan0": "192.168.100.7"})

    ip, notes = find_primary_ip(tmp_path, interfaces)

    assert ip == "192.0.2.10"
    assert notes == ()
    assert interfaces.requested == ["eth0"]


def test_primary_ip_ipv6_only(tmp_path: Path) -> None:
    """Without an IPv4 default route the IPv6 one gives the address."""
    write(tmp_path, "proc/self/net/route", IPV4_HEADER_ONLY)
    write(tmp_path, "proc/self/net/ipv6_route", IPV6_ROUTES)
    write(tmp_path, "proc/self/net/if_inet6", IF_INET6)
    interfaces = FakeInterfaces({})

    ip, notes = find_primary_ip(tmp_path, interfaces)

    assert ip == "2001:db8::2"
    assert notes == ()
    assert interfaces.requested == []


def test_primary_ip_ipv4_interface_without_address(tmp_path: Path) -> None:
    """An IPv4 default route on an interface without IPv4 falls back to IPv6."""
    write(tmp_path, "proc/self/net/route", IPV4_ROUTES)
    write(tmp_path, "proc/self/net/ipv6_route", IPV6_ROUTES)
    write(tmp_path, "proc/self/net/if_inet6", IF_INET6)

    ip, notes = find_primary_ip(tmp_path, FakeInterfaces({"eth0": "not-an-ip"}))

    assert ip == "2001:db8::2"
    assert notes == ("interface eth0 of the IPv4 default route has no IPv4 address",)


def test_primary_ip_no_route(tmp_path: Path) -> None:
    """Without any default route the loopback address is sent, with a note."""
    ip, notes = find_primary_ip(tmp_path, FakeInterfaces({"eth0": "192.0.2.10"}))

    assert ip == "127.0.0.1"
    assert notes == (
        "no default route with an address was found, so 127.0.0.1 is sent as the IP",
    )


def test_primary_ip_ipv6_without_global(tmp_path: Path) -> None:
    """An IPv6 default route on an interface with no global address is noted."""
    write(tmp_path, "proc/self/net/ipv6_route", IPV6_ROUTES)
    write(tmp_path, "proc/self/net/if_inet6", IF_INET6.splitlines()[0] + "\n")

    ip, notes = find_primary_ip(tmp_path, FakeInterfaces({}))

    assert ip == "127.0.0.1"
    assert notes == (
        "interface eth0 of the IPv6 default route has no usable global address",
        "no default route with an address was found, so 127.0.0.1 is sent as the IP",
    )


def test_interface_ipv4_address_loopback() -> None:
    """The ioctl lookup finds 127.0.0.1 on lo and nothing on a missing name."""
    assert interface_ipv4_address("lo") == "127.0.0.1"
    assert interface_ipv4_address("nosuchif0") is None


def test_machine_id_primary(tmp_path: Path) -> None:
    """/etc/machine-id is read and its newline dropped."""
    write(tmp_path, "etc/machine-id", "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    write(tmp_path, "var/lib/dbus/machine-id", "0" * 32 + "\n")

    assert read_machine_id(tmp_path) == ("3d1219c7c4c5404aaa1f6d2a48adfda4", ())


@pytest.mark.parametrize(
    "content",
    ["", "\n", "uninitialized\n", "3D1219C7C4C5404AAA1F6D2A48ADFDA4\n", "abc123\n"],
)
def test_machine_id_dbus_fallback(tmp_path: Path, content: str) -> None:
    """An empty or invalid /etc/machine-id falls back to the D-Bus copy."""
    etc = write(tmp_path, "etc/machine-id", content)
    write(tmp_path, "var/lib/dbus/machine-id", "b" * 32 + "\n")

    machine_id, notes = read_machine_id(tmp_path)

    assert machine_id == "b" * 32
    assert notes == (
        f"{etc} does not contain 32 lowercase hex digits, so it was skipped",
    )


def test_machine_id_only_dbus(tmp_path: Path) -> None:
    """A missing /etc/machine-id falls back to the D-Bus copy without a note."""
    write(tmp_path, "var/lib/dbus/machine-id", "c" * 32)

    assert read_machine_id(tmp_path) == ("c" * 32, ())


def test_machine_id_none(tmp_path: Path) -> None:
    """Without a valid machine id anywhere the result is None, with notes."""
    dbus = write(tmp_path, "var/lib/dbus/machine-id", "uninitialized\n")
    (tmp_path / "etc/machine-id").mkdir(parents=True)

    machine_id, notes = read_machine_id(tmp_path)

    assert machine_id is None
    etc = tmp_path / "etc/machine-id"
    assert notes == (
        f"cannot read {etc} ([Errno 21] Is a directory: '{etc}'), so it was skipped",
        f"{dbus} does not contain 32 lowercase hex digits, so it was skipped",
        f"no valid machine id was found in {etc} or {dbus}",
    )


def test_hostname_from_proc(tmp_path: Path) -> None:
    """The kernel hostname file is read without its newline."""
    write(tmp_path, "proc/sys/kernel/hostname", "db-7.example.net\n")

    assert read_hostname(tmp_path) == "db-7.example.net"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_hostname_fallback(tmp_path: Path, content: str | None) -> None:
    """A missing or empty hostname file falls back to socket.gethostname()."""
    if content is not None:
        write(tmp_path, "proc/sys/kernel/hostname", content)

    assert read_hostname(tmp_path) == socket.gethostname()


def test_host_facts_from_tree(tmp_path: Path) -> None:
    """read_host_facts combines the files under root with the lookup."""
    write(tmp_path, "proc/sys/kernel/hostname", "db-7\n")
    write(tmp_path, "etc/machine-id", "a" * 32 + "\n")
    write(tmp_path, "proc/self/net/route", IPV4_ROUTES)

    facts = read_host_facts(
        tmp_path, interface_address=FakeInterfaces({"eth0": "192.0.2.10"})
    )

    assert facts.os == platform.system().lower()
    assert facts.arch == go_arch(platform.machine())
    assert facts.hostname == "db-7"
    assert facts.ip == "192.0.2.10"
    assert facts.machine_id == "a" * 32
    assert facts.notes == ()


def test_host_facts_notes_combined(tmp_path: Path) -> None:
    """Notes of the machine id and IP fallbacks are both kept."""
    facts = read_host_facts(tmp_path, interface_address=FakeInterfaces({}))

    assert facts.machine_id is None
    assert facts.ip == "127.0.0.1"
    assert len(facts.notes) == 2
    assert facts.notes[0].startswith("no valid machine id was found in ")
    assert facts.notes[1].startswith("no default route with an address was found")


def test_real_machine() -> None:
    """On this machine the facts are complete and the IP parses."""
    facts = read_host_facts()

    assert facts.os == platform.system().lower()
    assert facts.arch
    assert facts.hostname
    assert ipaddress.ip_address(facts.ip)
    if facts.machine_id is not None:
        assert len(facts.machine_id) == 32
