"""WebSocket clients for the fan-out benchmark, in a process of their own.

    python -m bench.fanout ws://127.0.0.1:8001 --clients 500 --ticker FAN --expect 100

Connects `--clients` clients to /ws/quotes/?tickers=TICKER, prints "ready" once all are
connected, then records when each quote event arrives (by the quote's `volume`, which the
bench makes a sequence number) until every client has `--expect` of them or `--timeout`
passes. Prints one JSON object: {"received": {volume: [arrival times]}, "clients": n}.
"""

import argparse
import asyncio
import json
import sys
import time

import websockets


async def client(url: str, expect: int, arrivals: dict, connected: asyncio.Event, ready: list):
    async with websockets.connect(url, max_queue=None, open_timeout=60) as socket:
        ready.append(1)
        connected.set()
        seen = 0
        while seen < expect:
            message = json.loads(await socket.recv())
            now = time.time()
            if message.get("event") == "quote":
                arrivals.setdefault(message["quote"]["volume"], []).append(now)
                seen += 1


async def main(args) -> dict:
    url = f"{args.url.rstrip('/')}/ws/quotes/?tickers={args.ticker}"
    arrivals: dict[int, list[float]] = {}
    ready: list[int] = []
    connected = asyncio.Event()
    tasks = []
    for _ in range(args.clients):
        tasks.append(asyncio.create_task(client(url, args.expect, arrivals, connected, ready)))
        await asyncio.sleep(0)  # a handshake at a time: the server's backlog is finite
    deadline = time.monotonic() + 60
    while len(ready) < args.clients:
        if time.monotonic() > deadline or any(t.done() and t.exception() for t in tasks):
            sys.exit(f"only {len(ready)} of {args.clients} clients connected")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # each consumer joins its group before accepting; be sure
    print("ready", flush=True)
    await asyncio.wait(tasks, timeout=args.timeout)
    return {"received": arrivals, "clients": args.clients}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--ticker", default="FAN")
    parser.add_argument("--expect", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result), flush=True)
