"""``mailcore serve``: run the mail system in the foreground until SIGTERM, SIGINT or
``mailcore stop``; SIGHUP reloads the configuration as ``mailcore reload`` does.

Owns: the event loop choice (uvloop unless ``--no-uvloop``) and signal wiring; everything else
is mailcore.app.MailSystem, which embedders use directly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

from mailcore.config import Config


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the mail server in the foreground")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use asyncio's default event loop instead of uvloop")


def run_serve(ns: argparse.Namespace, load: Callable[[], Config]) -> int:
    config = load()
    for warning in config.warnings:
        print(f"mailcore serve: warning: {warning}", file=sys.stderr)
    factory = None
    if not ns.no_uvloop:
        try:
            import uvloop
        except ImportError:
            print("mailcore serve: warning: uvloop is not installed; using asyncio's loop",
                  file=sys.stderr)
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_until_signal(config, load))
    return 0


async def _serve_until_signal(config: Config, load: Callable[[], Config]) -> None:
    # Imported here so that the table and config tools start without loading the server.
    from mailcore.app import MailSystem

    stop = asyncio.Event()
    system = MailSystem(config, loader=load)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, system.request_reload)
    try:
        async with system:
            await system.wait(stop.wait)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
