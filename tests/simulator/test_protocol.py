"""Framing and handshake, unit-tested and against the running server over a raw socket."""

from __future__ import annotations

import socket
import struct

import pytest

from tws_simulator.protocol import (
    API_MAGIC,
    FrameReader,
    ProtocolError,
    decode_fields,
    encode_frame,
    encode_raw_frame,
    negotiate_version,
    parse_version_range,
)


def test_encode_frame_terminates_every_field_and_prefixes_the_length() -> None:
    frame = encode_frame(["9", "1", "42"])
    assert frame == struct.pack(">I", 7) + b"9\x001\x0042\x00"
    assert decode_fields(frame[4:]) == ["9", "1", "42"]


def test_reader_cuts_frames_split_across_reads_and_joined_in_one_read() -> None:
    reader = FrameReader()
    stream = (
        API_MAGIC
        + encode_raw_frame("v157..176")
        + encode_frame(["71", "2", "5", ""])
        + encode_frame(["49", "1"])
    )
    messages = []
    for byte in stream[:-9]:  # one byte per read
        messages.extend(reader.feed(bytes([byte])))
    messages.extend(reader.feed(stream[-9:]))
    assert messages == [["v157..176"], ["71", "2", "5", ""], ["49", "1"]]


def test_reader_rejects_a_connection_without_the_api_magic() -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("offered", "claimed"),
    [("v157..176", 176), ("v157..178", 176), ("v100..170 +PACEAPI", 170), ("v176", 176)],
)
def test_server_version_is_the_clients_highest_clamped_to_176(offered: str, claimed: int) -> None:
    assert negotiate_version(parse_version_range(offered)) == claimed


def test_a_client_below_version_157_is_refused() -> None:
    with pytest.raises(ProtocolError):
        negotiate_version(parse_version_range("v100..150"))


def _read_message(sock: socket.socket) -> list[str]:
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    (length,) = struct.unpack(">I", header)
    payload = b""
    while len(payload) < length:
        payload += sock.recv(length - len(payload))
    return decode_fields(payload)


def test_server_handles_split_and_pipelined_frames_and_ignores_unknown_messages(tws_simulator) -> None:
    with socket.create_connection((tws_simulator.host, tws_simulator.port), timeout=10) as sock:
        hello = API_MAGIC + encode_raw_frame("v157..176")
        for at in range(0, len(hello), 3):  # the handshake in 3-byte pieces
            sock.sendall(hello[at : at + 3])
        assert _read_message(sock)[0] == "176"
        # startApi, an unknown message id, garbage and reqCurrentTime, all in one write
        sock.sendall(
            encode_frame(["71", "2", "8", ""])
            + encode_frame(["999", "1", "x"])
            + encode_frame(["abc"])
            + encode_frame(["49", "1"])
        )
        replies = [_read_message(sock) for _ in range(3)]
        assert replies[0] == ["9", "1", "1"]
        assert replies[1] == ["15", "1", "DU1234567"]
        assert replies[2] == ["49", "1", str(int(tws_simulator.simulator.now().timestamp()))]
        # a request split in the middle of its length prefix still gets its answer
        request = encode_frame(["49", "1"])
        sock.sendall(request[:2])
        sock.sendall(request[2:])
        assert _read_message(sock)[0] == "49"


def test_server_closes_a_connection_whose_version_range_it_cannot_serve(tws_simulator) -> None:
    with socket.create_connection((tws_simulator.host, tws_simulator.port), timeout=10) as sock:
        sock.sendall(API_MAGIC + encode_raw_frame("v100..150"))
        assert sock.recv(1024) == b""  # closed without a handshake reply
    with socket.create_connection((tws_simulator.host, tws_simulator.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(1024) == b""
