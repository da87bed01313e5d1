"""The toncenter v2 client against toncenter-shaped answers (no Node needed)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp import web

from cocoon.chain.toncenter import ChainError, TonCenterClient, TvmCell, TvmSlice

BOC = base64.b64encode(b"\xb5\xee\x9cr").decode()


Seen = list[tuple[str | None, Any]]  # (X-API-Key, JSON body or None)


async def _serve(routes: dict[str, Any]) -> tuple[web.AppRunner, str, Seen]:
    seen: Seen = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else None
        seen.append((request.headers.get("X-API-Key"), body))
        if request.match_info["method"] not in routes:
            return web.Response(text="<html>a captive portal</html>")  # not the API
        status, answer = routes[request.match_info["method"]]
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_route("*", "/api/v2/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/v2", seen


async def test_decodes_toncenter_answers_and_sends_the_key() -> None:
    tx_id = {"@type": "internal.transactionId", "lt": "47000001", "hash": "aGFzaA=="}
    routes = {
        "getAddressInformation": (
            200,
            {
                "ok": True,
                "result": {
                    "@type": "raw.fullAccountState",
                    "balance": "123456789012",
                    "code": "",
                    "data": "",
                    "last_transaction_id": tx_id,
                    "block_id": {},
                    "frozen_hash": "",
                    "sync_utime": 1700000000,
                    "state": "uninitialized",
                },
            },
        ),
        "runGetMethod": (
            200,
            {
                "ok": True,
                "result": {
                    "gas_used": 812,
                    "exit_code": 0,
                    "stack": [
                        ["num", "-0x2a"],
                        ["cell", {"bytes": BOC, "object": {}}],
                        ["list", {"@type": "tvm.list", "elements": []}],
                        [
                            "tuple",
                            {
                                "@type": "tvm.tuple",
                                "elements": [
                                    {
                                        "@type": "tvm.stackEntryNumber",
                                        "number": {"number": "7"},
                                    },
                                    {"@type": "tvm.stackEntrySlice", "slice": {"bytes": BOC}},
                                ],
                            },
                        ],
                    ],
                },
            },
        ),
        "getTransactions": (
            200,
            {
                "ok": True,
                "result": [
                    {
                        "@type": "raw.transaction",
                        "utime": 1700000001,
                        "data": BOC,
                        "transaction_id": tx_id,
                        "fee": "1000",
                        "storage_fee": "1",
                        "other_fee": "999",
                        "in_msg": {
                            "@type": "raw.message",
                            "source": "EQsrc",
                            "destination": "EQdst",
                            "value": "5000000000",
                            "fwd_fee": "0",
                            "ihr_fee": "0",
                            "created_lt": "47000000",
                            "body_hash": "x",
                            "msg_data": {"@type": "msg.dataText", "text": "aGk="},
                            "message": "hi",
                        },
                        "out_msgs": [],
                    }
                ],
            },
        ),
        "sendBoc": (500, {"ok": False, "error": "LITE_SERVER_UNKNOWN: rejected", "code": 500}),
        "getAddressBalance": (429, {"ok": False, "error": "Ratelimit exceed", "code": 429}),
    }
    runner, endpoint, seen = await _serve(routes)
    try:
        async with TonCenterClient(endpoint, api_key="k3y") as c:
            info = await c.get_address_information("EQaddr")
            assert info.balance == 123_456_789_012 and not info.active
            assert info.last_transaction_id.lt == 47_000_001
            r = await c.run_get_method("EQaddr", "get", [5, TvmCell(b"\x01"), TvmSlice(b"\x02")])
            assert r.exit_code == 0 and r.gas_used == 812
            assert r.stack == [
                -42,
                TvmCell(base64.b64decode(BOC)),
                None,
                [7, TvmSlice(b"\xb5\xee\x9cr")],
            ]
            sent = seen[-1][1]
            assert sent["stack"] == [["num", "5"], ["tvm.Cell", "AQ=="], ["tvm.Slice", "Ag=="]]
            (tx,) = await c.get_transactions("EQaddr", limit=1)
            assert tx.fee == 1000 and tx.in_msg is not None and tx.in_msg.value == 5 * 10**9
            with pytest.raises(ChainError) as err:
                await c.send_boc(b"\x00")
            assert (err.value.code, err.value.message) == (500, "LITE_SERVER_UNKNOWN: rejected")
            with pytest.raises(ChainError) as err:
                await c.call("getAddressBalance", {"address": "x"})
            assert err.value.code == 429
            with pytest.raises(ChainError) as err:
                await c.call("nothing_here")
            assert err.value.code == 0
        assert all(key == "k3y" for key, _ in seen)
    finally:
        await runner.cleanup()
