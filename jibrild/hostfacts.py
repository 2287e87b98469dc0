"""Facts about the host sent at registration: os, arch, hostname, IP, machine id."""

import fcntl
import ipaddress
import platform
import re
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

InterfaceAddressLookup = Callable[[str], str | None]

# Machine names from platform.machine() mapped to Go's GOARCH names.
GO_ARCH_NAMES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
}

MACHINE_ID_FILES = (Path("etc/machine-id"), Path("var/lib/dbus/machine-id"))
LOOPBACK_ADDRESS = "127.0.0.1"

_MACHINE_ID = re.compile(r"[0-9a-f]{32}")

# Route flags from linux/route.h and linux/ipv6_route.h.
_RTF_UP = 0x0001
_RTF_REJECT = 0x0200

# ioctl request that reads an interface's IPv4 address (linux/sockios.h).
_SIOCGIFADDR = 0x8915
_IFNAMSIZ = 16

# Scope and flag bits of /proc/self/net/if_inet6 (linux/if_addr.h).
_SCOPE_GLOBAL = 0x00
_IFA_F_TEMPORARY = 0x01
_IFA_F_UNUSABLE = 0x08 | 0x20 | 0x40  # DADFAILED, DEPRECATED, TENTATIVE


@dataclass(frozen=True)
class HostFacts:
    """Host facts that go into the registration body."""

    os: str
    arch: str
    hostname: str
    ip: str
    machine_id: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """One IPv4 or IPv6 route from /proc/self/net/route or /proc/self/net/ipv6_route."""

    interface: str
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address
    flags: int
    metric: int

    @property
    def is_usable_default(self) -> bool:
        """True for an up route to every address that is not a reject route."""
        up = bool(self.flags & _RTF_UP)
        reject = bool(self.flags & _RTF_REJECT)
        return up and not reject and self.destination.prefixlen == 0


def interface_ipv4_address(interface: str) -> str | None:
    """Return the IPv4 address of a network interface, or None if it has none.

    Uses the SIOCGIFADDR ioctl on an unbound UDP socket, which sends nothing.
    """
    request = struct.pack("256s", interface.encode()[: _IFNAMSIZ - 1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
    except OSError:
        return None

    # struct ifreq: the name, then a sockaddr_in whose address is at byte 20.
    return socket.inet_ntoa(reply[20:24])


def read_host_facts(
    root: Path = Path("/"),
    *,
    interface_address: InterfaceAddressLookup = interface_ipv4_address,
) -> HostFacts:
    """Read the host facts, looking up files under `root`."""
    machine_id, id_notes = read_machine_id(root)
    ip, ip_notes = find_primary_ip(root, interface_address)

    return HostFacts(
        os=platform.system().lower(),
        arch=go_arch(platform.machine()),
        hostname=read_hostname(root),
        ip=ip,
        machine_id=machine_id,
        notes=id_notes + ip_notes,
    )


def go_arch(machine: str) -> str:
    """Return Go's name for a platform.machine() value, or the value unchanged."""
    return GO_ARCH_NAMES.get(machine.lower(), machine)


def read_hostname(root: Path) -> str:
    """Return the hostname in `root`'s proc/sys/kernel/hostname, else the socket's."""
    try:
        hostname = (root / "proc/sys/kernel/hostname").read_text().strip()
    except (OSError, UnicodeDecodeError):
        hostname = ""
    return hostname or socket.gethostname()


def read_machine_id(root: Path) -> tuple[str | None, tuple[str, ...]]:
    """Return the first valid machine id under `root`, and notes on bad files.

    A valid id is 32 lowercase hex digits, as machine-id(5) defines it, so the
    "uninitialized" marker of a first boot is skipped.
    """
    notes: list[str] = []
    for relative in MACHINE_ID_FILES:
        path = root / relative
        try:
            machine_id = path.read_text().strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as error:
            notes.append(f"cannot read {path} ({error}), so it was skipped")
            continue

        if _MACHINE_ID.fullmatch(machine_id):
            return machine_id, tuple(notes)
        notes.append(
            f"{path} does not contain 32 lowercase hex digits, so it was skipped"
        )

    notes.append("no valid machine id was found in " + _joined(root, MACHINE_ID_FILES))
    return None, tuple(notes)


def _joined(root: Path, paths: tuple[Path, ...]) -> str:
    return " or ".join(str(root / path) for path in paths)


def find_primary_ip(
    root: Path, interface_address: InterfaceAddressLookup
) -> tuple[str, tuple[str, ...]]:
    """Return the address of the default route's interface, and fallback notes.

    IPv4 comes first and IPv6 second. Without a default route the loopback
    address is returned. The routing tables are read, so no packet is sent,
    from /proc/self/net: a service with ProcSubset=pid has no /proc/net.
    """
    notes: list[str] = []

    interface = default_route_interface(_read_text(root / "proc/self/net/route"), 4)
    if interface is not None:
        address = _valid_ip(interface_address(interface))
        if address is not None:
            return address, ()
        notes.append(
            f"interface {interface} of the IPv4 default route has no IPv4 address"
        )

    ipv6_routes = _read_text(root / "proc/self/net/ipv6_route")
    interface = default_route_interface(ipv6_routes, 6)
    if interface is not None:
        address = global_ipv6_address(
            _read_text(root / "proc/self/net/if_inet6"), interface
        )
        if address is not None:
            return address, tuple(notes)
        notes.append(
            f"interface {interface} of the IPv6 default route has no usable "
            "global address"
        )

    notes.append(
        f"no default route with an address was found, so {LOOPBACK_ADDRESS} "
        "is sent as the IP"
    )
    return LOOPBACK_ADDRESS, tuple(notes)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _valid_ip(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def default_route_interface(routes_text: str, version: int) -> str | None:
    """Return the interface of the lowest-metric default route, if there is one.

    `routes_text` is /proc/self/net/route for `version` 4 or /proc/self/net/ipv6_route
    for 6.
    """
    if version == 4:
        routes = parse_ipv4_routes(routes_text)
    else:
        routes = parse_ipv6_routes(routes_text)

    defaults = [route for route in routes if route.is_usable_default]
    if not defaults:
        return None
    return min(defaults, key=lambda route: route.metric).interface


def parse_ipv4_routes(text: str) -> list[Route]:
    """Parse /proc/self/net/route, skipping its header and any malformed line.

    Addresses are hex of the 32-bit value in host byte order, so on a
    little-endian machine 192.0.2.1 reads "010200C0". The metric is decimal.
    """
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        try:
            routes.append(_parse_ipv4_route(fields))
        except (IndexError, ValueError):
            continue
    return routes


def _parse_ipv4_route(fields: list[str]) -> Route:
    interface, destination, gateway, flags, metric, mask = (
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        fields[6],
        fields[7],
    )
    network = f"{_ipv4_from_hex(destination)}/{_ipv4_from_hex(mask)}"
    return Route(
        interface=interface,
        destination=ipaddress.IPv4Network(network, strict=False),
        gateway=_ipv4_from_hex(gateway),
        flags=int(flags, 16),
        metric=int(metric),
    )


def _ipv4_from_hex(value: str) -> ipaddress.IPv4Address:
    packed = int(value, 16).to_bytes(4, sys.byteorder)
    return ipaddress.IPv4Address(packed)


def parse_ipv6_routes(text: str) -> list[Route]:
    """Parse /proc/self/net/ipv6_route, which has no header, skipping malformed lines.

    Addresses are hex in network byte order. Prefix length, metric and flags
    are hex too.
    """
    routes = []
    for line in text.splitlines():
        fields = line.split()
        try:
            routes.append(_parse_ipv6_route(fields))
        except (IndexError, ValueError):
            continue
    return routes


def _parse_ipv6_route(fields: list[str]) -> Route:
    destination = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
    prefix_length = int(fields[1], 16)
    return Route(
        interface=fields[9],
        destination=ipaddress.IPv6Network(
            f"{destination}/{prefix_length}", strict=False
        ),
        gateway=ipaddress.IPv6Address(bytes.fromhex(fields[4])),
        flags=int(fields[8], 16),
        metric=int(fields[5], 16),
    )


def global_ipv6_address(if_inet6_text: str, interface: str) -> str | None:
    """Return a usable global address of `interface` from /proc/self/net/if_inet6.

    Tentative, deprecated and failed addresses are skipped. A stable address
    is preferred to a temporary privacy address.
    """
    candidates = []
    for line in if_inet6_text.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != interface:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            scope, flags = int(fields[3], 16), int(fields[4], 16)
        except ValueError:
            continue
        if scope == _SCOPE_GLOBAL and not flags & _IFA_F_UNUSABLE:
            candidates.append((bool(flags & _IFA_F_TEMPORARY), str(address)))

    if not candidates:
        return None
    return min(candidates)[1]
