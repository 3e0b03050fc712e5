"""The TWS socket protocol's framing: the handshake, length-prefixed frames and NUL-terminated fields.

The message ids of both directions are listed here as enums. See docs/simulator.md#wire-protocol.
"""

from __future__ import annotations

import enum
import struct

#: The raw bytes a client sends before its first frame.
API_MAGIC = b"API\0"

#: Highest server version claimed. 176 is inside both ib_insync's and ib_async's range, and every
#: layout used here is the same at 176-178; 194 and above change the error and historical layouts.
MAX_SERVER_VERSION = 176
#: Lowest version the clients accept.
MIN_SERVER_VERSION = 157

_LENGTH = struct.Struct(">I")
#: Refuse frames larger than this: a corrupt length would otherwise buffer forever.
MAX_FRAME_BYTES = 16 * 1024 * 1024


class ProtocolError(ValueError):
    """The peer sent bytes that are not the TWS protocol; the connection should be closed."""


class IncomingMessage(enum.IntEnum):
    """Client->server message ids this simulator understands."""

    REQ_MKT_DATA = 1
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_COMPLETED_ORDERS = 99


class OutgoingMessage(enum.IntEnum):
    """Server->client message ids this simulator sends."""

    ERROR = 4
    NEXT_VALID_ID = 9
    CONTRACT_DETAILS = 10
    MANAGED_ACCOUNTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    CONTRACT_DETAILS_END = 52
    OPEN_ORDER_END = 53
    ACCOUNT_DOWNLOAD_END = 54
    EXECUTION_DETAILS_END = 55
    POSITION_END = 62
    ACCOUNT_UPDATE_MULTI_END = 74
    HEAD_TIMESTAMP = 88
    HISTORICAL_DATA_UPDATE = 90
    COMPLETED_ORDERS_END = 102


def encode_frame(fields: list[str] | tuple[str, ...]) -> bytes:
    """Encode one server->client message: every field NUL-terminated, behind a 4-byte length."""
    payload = "".join(f"{field}\0" for field in fields).encode()
    return _LENGTH.pack(len(payload)) + payload


def encode_raw_frame(text: str) -> bytes:
    """Encode a frame holding ``text`` as is, without field terminators (the client's version range)."""
    payload = text.encode()
    return _LENGTH.pack(len(payload)) + payload


def decode_fields(payload: bytes) -> list[str]:
    """Return the fields of one frame's payload; the empty element after the last NUL is dropped."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def parse_version_range(text: str) -> tuple[int, int]:
    """Parse a client's version range: ``v157..176 +PACEAPI`` -> (157, 176); ``v176`` is a range of one."""
    token = text.split(" ", 1)[0]
    if not token.startswith("v"):
        raise ProtocolError(f"Expected a version range like 'v157..176', got {text!r}")
    low, _, high = token[1:].partition("..")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ProtocolError(f"Malformed version range {text!r}") from None


def negotiate_version(client_range: tuple[int, int]) -> int:
    """Return the server version to claim: the client's highest, clamped to :data:`MAX_SERVER_VERSION`."""
    low, high = client_range
    version = min(high, MAX_SERVER_VERSION)
    if version < max(low, MIN_SERVER_VERSION):
        raise ProtocolError(f"No common server version with client range {low}..{high}")
    return version


class FrameReader:
    """Buffer bytes from a client socket and cut them into messages.

    The first message is the handshake: the magic (``API`` and a NUL byte) plus one frame with the
    version range, returned as a one-field list ``["v157..176"]``. Every later frame is returned as
    its list of fields.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._magic_seen = False
        self.handshake_done = False

    def feed(self, data: bytes) -> list[list[str]]:
        """Add bytes read from the socket; return every message now complete, in order."""
        self._buffer += data
        messages: list[list[str]] = []
        if not self._magic_seen:
            if len(self._buffer) < len(API_MAGIC):
                return messages
            if bytes(self._buffer[: len(API_MAGIC)]) != API_MAGIC:
                raise ProtocolError("Connection did not start with the TWS API magic 'API\\0'")
            del self._buffer[: len(API_MAGIC)]
            self._magic_seen = True
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise ProtocolError(f"Frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
            end = offset + 4 + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[offset + 4 : end])
            offset = end
            if self.handshake_done:
                messages.append(decode_fields(payload))
            else:
                self.handshake_done = True
                messages.append([payload.decode(errors="backslashreplace").rstrip("\0")])
        if offset:
            del buffer[:offset]
        return messages
