"""The local host's listening socket: connections it accepts send without Nagle's delay.

With Nagle's algorithm on, a response written in two parts (head, then body) waits for the
client's delayed ACK: about 40 ms on every keep-alive request (seen by ``make bench``).
"""

from __future__ import annotations

import asyncio
import socket

from localdev.host.server import listening_socket


def test_accepted_connections_have_tcp_nodelay() -> None:
    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = writer.get_extra_info("socket")
            seen.set_result(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = listening_socket("127.0.0.1", 0)
        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(seen, timeout=5)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) != 0
