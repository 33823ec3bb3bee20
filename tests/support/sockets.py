"""Which TCP sockets a set of processes listens on, read from /proc as `ss -ltnp` does: the
listening sockets of /proc/net/tcp and tcp6, matched to processes by the socket inodes of
their open file descriptors."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the TCP state column of /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    pid: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    @property
    def loopback(self) -> bool:
        address = self.address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # The kernel prints the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_inodes() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            hex_address, hex_port = fields[1].split(":")
            found[int(fields[9])] = (_address(hex_address), int(hex_port, 16))
    return found


def listeners(pids: list[int]) -> list[Listener]:
    """Every listening TCP socket the processes hold (those that end meanwhile are skipped)."""
    inodes = listening_inodes()
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[len("socket:["):-1])
                if inode in inodes:
                    found.append(Listener(pid, *inodes[inode]))
    return found


# Ray Serve 2.60 binds each replica's inter-deployment gRPC server to [::]:0 (hard-coded in
# ray/serve/_private/replica.py); nothing the launcher sets moves it to loopback. Ray's token
# guards it: a call without the token is refused (UNAUTHENTICATED).
SERVE_REPLICA_TITLE = "ray::ServeReplica:"


def refuses_calls_without_ray_token(port: int) -> bool:
    """A gRPC call without Ray's token to ``port`` (from this machine's outward address when
    it has one) is refused as unauthenticated."""
    import grpc

    channel = grpc.insecure_channel(f"{outward_address()}:{port}")
    try:
        channel.unary_unary("/ray.serve.ASGIService/HandleRequest")(b"", timeout=10)
    except grpc.RpcError as e:
        return bool(e.code() == grpc.StatusCode.UNAUTHENTICATED)
    finally:
        channel.close()
    return False


def outward_address() -> str:
    """The address this machine reaches others from (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
