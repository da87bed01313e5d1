"""The attacks `attack_gateway` sends: one request each, by class of junk.

Each names what a correct gateway answers (`expect`): a 4xx for junk, a 2xx
where the input is valid but odd. Floods are bounded batches of many distinct
requests, for memory that must stay bounded (the response store, Telegram
users).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from ..telegram_initdata import sign_init_data

MODEL = "synthetic-small"
JSON = {"Content-Type": "application/json"}
BIG = "Z" * (1 << 20)


@dataclass
class Attack:
    """One request and the statuses that meet the bar."""

    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = (400,)
    # A request line sent as written (path traversal: a client library normalises).
    raw_path: str | None = None


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _responses(auth: dict[str, str]) -> list[Attack]:
    def post(name: str, body: object, expect: tuple[int, ...] = (400,)) -> Attack:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Attack(name, "POST", "/v1/responses", raw, {**auth, **JSON}, expect)

    base = {"model": MODEL, "max_output_tokens": 4}
    inputs: list[tuple[str, object]] = [
        ("input a number", 5),
        ("input an object", {"role": "user"}),
        ("input an empty list", []),
        ("input items numbers", [1, 2]),
        ("input item role junk", [{"type": "message", "role": 5, "content": "x"}]),
        ("input content a number", [{"type": "message", "role": "user", "content": 5}]),
        ("input content parts junk", [{"role": "user", "content": [1, None, "x"]}]),
        ("input content part image", [{"role": "user", "content": [{"type": "input_image"}]}]),
        ("input item type unknown", [{"type": "computer_call", "id": "x"}]),
        ("input item type a list", [{"type": ["message"], "role": "user", "content": "x"}]),
        ("function_call name a number", [{"type": "function_call", "name": 5, "call_id": "c"}]),
        (
            "function_call arguments an object",
            [{"type": "function_call", "name": "f", "arguments": {"a": 1}, "call_id": "c"}],
        ),
        (
            "function_call_output output junk",
            [{"type": "function_call_output", "call_id": "c", "output": [1, 2]}],
        ),
        ("input nested 60 deep", json.loads(_nested(60))),
        ("input content huge role", [{"role": BIG[:100_000], "content": "x"}]),
    ]
    attacks = [post(name, {**base, "input": value}) for name, value in inputs]
    deep = b'{"model":"%s","input":' % MODEL.encode() + _nested(3000).encode() + b"}"
    attacks.append(post("body nested 3,000 deep", deep))
    attacks.append(post("input 2**70 in content", b'{"model":"m","input":[{"x":%d}]}' % 2**70))
    attacks.append(post("not JSON", b"{"))
    attacks.append(post("not UTF-8", b'{"model":"\xff"}'))
    attacks.append(post("a JSON list", [1]))
    for name, value in [
        ("previous_response_id a number", 5),
        ("previous_response_id an object", {"id": "resp_x"}),
        ("previous_response_id 1 MiB", BIG),
        ("previous_response_id unknown", "resp_nothing"),
    ]:
        expect = (404,) if name.endswith("unknown") else (400,)
        attacks.append(post(name, {**base, "input": "hi", "previous_response_id": value}, expect))
    extras: list[tuple[str, dict[str, object]]] = [
        ("metadata 1 MiB", {"metadata": {"k": BIG}}),
        ("metadata 10,000 keys", {"metadata": {str(i): "v" for i in range(10_000)}}),
        ("metadata a list", {"metadata": [1]}),
        ("instructions a number", {"instructions": 5}),
        ("stream a string", {"stream": "yes"}),
        ("store a string", {"store": "no"}),
        ("tools an object", {"tools": {"a": 1}}),
        ("tool of unknown type", {"tools": [{"type": "web_search"}]}),
        ("tool_choice names a missing function", {"tool_choice": {"type": "function"}}),
        ("text a number", {"text": 5}),
        ("text.format type junk", {"text": {"format": {"type": 5}}}),
        ("include junk", {"include": [{"a": 1}]}),
        ("reasoning junk", {"reasoning": {"effort": "max"}}),
        ("max_output_tokens 2**64", {"max_output_tokens": 2**64}),
        ("temperature a string", {"temperature": "hot"}),
    ]
    for name, extra in extras:
        attacks.append(post(name, {**base, "input": "hi", **extra}))
    attacks.append(post("a valid request", {**base, "input": "hi"}, (200,)))
    for name, rid in [("junk id", "..%2f..%2fetc"), ("long id", "r" * 4000)]:
        attacks.append(
            Attack(f"GET response {name}", "GET", f"/v1/responses/{rid}", b"", auth, (404,))
        )
    return attacks


def _schema(depth: int) -> dict[str, object]:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _chat_controls(auth: dict[str, str]) -> list[Attack]:
    def chat(name: str, extra: dict[str, object], expect: tuple[int, ...] = (400,)) -> Attack:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
        return Attack(
            name,
            "POST",
            "/v1/chat/completions",
            json.dumps(body).encode(),
            {**auth, **JSON},
            expect,
        )

    def fmt(schema: object) -> dict[str, object]:
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            }
        }

    def tool(name: str, parameters: object = None) -> dict[str, object]:
        function: dict[str, object] = {"name": name}
        if parameters is not None:
            function["parameters"] = parameters
        return {"type": "function", "function": function}

    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(50_000)}}
    return [
        chat("schema nested 30 objects deep", fmt(_schema(30))),
        chat("schema of 50,000 properties", fmt(wide)),
        chat(
            "schema maxLength 10**9",
            fmt({"type": "object", "properties": {"a": {"type": "string", "maxLength": 10**9}}}),
        ),
        chat(
            "schema minItems 10**7",
            fmt({"type": "object", "properties": {"a": {"type": "array", "minItems": 10**7}}}),
        ),
        chat(
            "schema pattern a{1000000}",
            fmt(
                {"type": "object", "properties": {"a": {"type": "string", "pattern": "a{1000000}"}}}
            ),
        ),
        chat("schema a string", fmt("object")),
        chat("200 tools", {"tools": [tool(f"f{i}") for i in range(200)]}),
        chat("tool name with a space", {"tools": [tool("get weather")]}),
        chat("tool name 1 MiB", {"tools": [tool(BIG)]}),
        chat("tool name NUL", {"tools": [tool("a\x00b")]}),
        chat(
            "tool parameters 10,000 properties",
            {"tools": [tool("f", wide | {"properties": {f"p{i}": {} for i in range(10_000)}})]},
        ),
        chat(
            "tool_choice names a missing function",
            {
                "tools": [tool("f")],
                "tool_choice": {"type": "function", "function": {"name": "g" * 100_000}},
            },
        ),
        chat("tool_choice junk string", {"tools": [tool("f")], "tool_choice": "x" * 100_000}),
        chat("a valid tool", {"tools": [tool("f", {"type": "object"})]}, (200, 400)),
    ]


def _web(auth: dict[str, str], keyed: bool) -> list[Attack]:
    attacks = [
        Attack(f"app path {p}", "GET", "", raw_path=p, expect=(400, 404))
        for p in (
            "/app/../../etc/passwd",
            "/app/%2e%2e/%2e%2e/etc/passwd",
            "/app/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/app//etc/passwd",
            "/app/%00",
            "/app/index.html%00.js",
            "/app/" + "x" * 6000,
            "/app/%ff%fe",
        )
    ]
    for rid in ("..", "%00", "x" * 4000, "%ff", "%27%20OR%201=1"):
        for kind in ("answers", "evidence"):
            attacks.append(
                Attack(
                    f"{kind} id {rid[:8]}",
                    "GET",
                    "",
                    headers=auth,
                    raw_path=f"/v1/{kind}/{rid}",
                    expect=(404,),
                )
            )

    def action(
        name: str, path: str, body: bytes, headers: dict[str, str], expect: tuple[int, ...]
    ) -> Attack:
        return Attack(name, "POST", path, body, headers, expect)

    top = "/v1/wallet/top-up"
    for name, body in [
        ("amount huge", b'{"amount_ton": "1e999999999999"}'),
        ("amount 2**200", b'{"amount_ton": %d}' % 2**200),
        ("amount negative", b'{"amount_ton": "-5"}'),
        ("amount NaN", b'{"amount_ton": "NaN"}'),
        ("amount 10 decimals", b'{"amount_ton": "0.0000000001"}'),
        ("amount a list", b'{"amount_ton": [1]}'),
        ("amount missing", b"{}"),
        ("body nested 2,000 deep", _nested(2000).encode()),
        ("body not JSON", b"{"),
        ("body not UTF-8", b'{"amount_ton": "\xff"}'),
        ("body a list", b"[]"),
        ("body 1 MiB", json.dumps({"amount_ton": "1", "x": BIG}).encode()),
    ]:
        # 409: payments are off on a node run without them; what matters is no 500.
        attacks.append(action(f"top-up {name}", top, body, {**auth, **JSON}, (400, 409, 413)))
    attacks.append(action("top-up as a form", top, b"amount_ton=1", {**auth}, (415,)))
    attacks.append(
        action(
            "close as text",
            "/v1/wallet/close",
            b"{}",
            {**auth, "Content-Type": "text/plain"},
            (415,),
        )
    )
    attacks.append(
        action("close nested", "/v1/wallet/close", _nested(2000).encode(), {**auth, **JSON}, (400,))
    )
    if keyed:
        for path in (top, "/v1/wallet/close"):
            attacks.append(action(f"{path} without a key", path, b"{}", JSON, (401,)))
            attacks.append(
                action(
                    f"{path} wrong key",
                    path,
                    b"{}",
                    {**JSON, "Authorization": "Bearer nope"},
                    (401,),
                )
            )
    return attacks


def _telegram(auth: dict[str, str], init_data: str | None) -> list[Attack]:
    if init_data is None:
        return []
    chat = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    ).encode()
    path = "/v1/chat/completions"
    junk = [
        ("initData junk", "x=1&&&"),
        ("initData 8,000 chars", "a=" + "Z" * 7998),
        ("initData no hash", "auth_date=1&user=%7B%7D"),
        ("initData bad hash", init_data.replace("hash=", "hash=00")),
        ("initData NUL", "user=%00&hash=%00"),
        ("initData user junk", "user=" + "%5B" * 2000),
    ]
    attacks = [
        Attack(name, "POST", path, chat, {**JSON, "X-Telegram-Init-Data": value}, (401,))
        for name, value in junk
    ]
    attacks.append(
        Attack(
            "tma junk", "POST", path, chat, {**JSON, "Authorization": "tma " + "Z" * 7000}, (401,)
        )
    )
    attacks.append(
        Attack(
            "initData over the header limit",
            "POST",
            path,
            chat,
            {**JSON, "X-Telegram-Init-Data": "Z" * 9000},
            (400, 401, 431),
        )
    )
    attacks.append(
        Attack(
            "initData valid",
            "POST",
            path,
            chat,
            {**JSON, "X-Telegram-Init-Data": init_data},
            (200,),
        )
    )
    return attacks


def single_attacks(auth: dict[str, str], init_data: str | None, keyed: bool) -> list[Attack]:
    return [
        *_responses(auth),
        *_chat_controls(auth),
        *_web(auth, keyed),
        *_telegram(auth, init_data),
    ]


def floods(auth: dict[str, str], bot_token: str, count: int) -> dict[str, list[Attack]]:
    """Batches of `count` distinct requests that each leave something in memory
    unless a bound holds."""
    headers = {**auth, **JSON}
    big = "Y" * (1 << 20)
    stored = [
        Attack(
            f"stored {i}",
            "POST",
            "/v1/responses",
            json.dumps(
                {
                    "model": MODEL,
                    "input": f"{i}",
                    "max_output_tokens": 2,
                    "instructions": big + str(i),
                }
            ).encode(),
            headers,
            (200, 400),
        )
        for i in range(count)
    ]
    out = {"responses with 1 MiB instructions": stored}
    if bot_token:
        now = str(int(time.time()))
        users = []
        for i in range(count * 20):
            fields = {"auth_date": now, "user": json.dumps({"id": 10_000 + i})}
            users.append(
                Attack(
                    f"user {i}",
                    "POST",
                    "/v1/chat/completions",
                    b"{}",
                    {**JSON, "X-Telegram-Init-Data": sign_init_data(fields, bot_token)},
                    (400,),
                )
            )
        out["distinct Telegram users"] = users
    return out
