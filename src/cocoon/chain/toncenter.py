"""Async client for the toncenter v2 HTTP API (the subset Cocoon uses).

The same client talks to TON mainnet/testnet (``https://toncenter.com/api/v2/``,
``https://testnet.toncenter.com/api/v2/``) and to the local chain
(:mod:`cocoon.chain.local`), which serves the same subset.

Every answer comes in toncenter's envelope ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": ..., "code": ...}``; a refusal raises :class:`ChainError`
with the API's code and message. Amounts are integer nanotons.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec

__all__ = [
    "AddressInformation",
    "ChainError",
    "GetMethodResult",
    "Message",
    "MsgData",
    "StackValue",
    "TonCenterClient",
    "Transaction",
    "TransactionId",
    "TvmCell",
    "TvmSlice",
]

T = TypeVar("T")


class ChainError(Exception):
    """The API refused a call (``code``: the API's code, usually the HTTP status;
    0 when the endpoint could not be reached or answered something that is not the API)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


class TransactionId(msgspec.Struct, frozen=True):
    lt: int
    hash: str  # base64


class AddressInformation(msgspec.Struct, frozen=True):
    balance: int
    state: str  # "active" | "uninitialized" | "frozen"
    last_transaction_id: TransactionId
    code: str = ""  # base64 BoC, "" when none
    data: str = ""
    frozen_hash: str = ""
    sync_utime: int = 0

    @property
    def active(self) -> bool:
        return self.state == "active"


class MsgData(msgspec.Struct, frozen=True):
    body: str = ""  # base64 BoC (msg.dataRaw)
    init_state: str = ""
    text: str = ""  # msg.dataText


class Message(msgspec.Struct, frozen=True):
    source: str = ""
    destination: str = ""
    value: int = 0
    fwd_fee: int = 0
    ihr_fee: int = 0
    created_lt: int = 0
    body_hash: str = ""
    msg_data: MsgData = MsgData()
    bounce: bool = False
    bounced: bool = False


class Transaction(msgspec.Struct, frozen=True):
    transaction_id: TransactionId
    utime: int
    data: str  # base64 BoC of the whole transaction
    fee: int = 0
    storage_fee: int = 0
    other_fee: int = 0
    in_msg: Message | None = None
    out_msgs: list[Message] = []
    # Only the local chain reports these (toncenter leaves them out).
    compute_exit_code: int | None = None
    aborted: bool | None = None


class TvmCell(msgspec.Struct, frozen=True):
    """A cell on the TVM stack, as a BoC."""

    boc: bytes


class TvmSlice(msgspec.Struct, frozen=True):
    """A slice on the TVM stack, as the BoC of its cell."""

    boc: bytes


# int, None (null / empty list), a cell, a slice, or a tuple of those.
StackValue = int | None | TvmCell | TvmSlice | list[Any]


class GetMethodResult(msgspec.Struct, frozen=True):
    exit_code: int
    gas_used: int
    stack: list[StackValue]

    def int_at(self, index: int) -> int:
        v = self.stack[index]
        if not isinstance(v, int):
            raise TypeError(f"stack[{index}] is {type(v).__name__}, not an int")
        return v


class _Envelope(msgspec.Struct):
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: str = ""
    code: int = 0


class _RawRunResult(msgspec.Struct):
    exit_code: int
    gas_used: int = 0
    stack: list[list[Any]] = []


def _num(s: str) -> int:
    s = s.strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    n = int(s, 16) if s.lower().startswith("0x") else int(s)
    return -n if neg else n


def _boc(v: Any) -> bytes:
    return base64.b64decode(v["bytes"] if isinstance(v, dict) else v)


def _nested(e: dict[str, Any]) -> StackValue:
    """toncenter's nested (tvm.stackEntry*) form, used inside tuples and lists."""
    t = e.get("@type", "")
    if t == "tvm.stackEntryNumber":
        return _num(str(e["number"]["number"]))
    if t == "tvm.stackEntryCell":
        return TvmCell(_boc(e["cell"]))
    if t == "tvm.stackEntrySlice":
        return TvmSlice(_boc(e["slice"]))
    if t == "tvm.stackEntryTuple":
        return [_nested(x) for x in e["tuple"]["elements"]]
    if t == "tvm.stackEntryList":
        items = e["list"]["elements"]
        return [_nested(x) for x in items] if items else None
    raise ChainError(0, f"unsupported stack entry {t!r}")


def _stack_value(entry: Sequence[Any]) -> StackValue:
    kind: str = entry[0]
    v: Any = entry[1] if len(entry) > 1 else None
    if kind == "num":
        return _num(str(v))
    if kind == "null":
        return None
    if kind == "cell":
        return TvmCell(_boc(v))
    if kind == "slice":
        return TvmSlice(_boc(v))
    if kind in ("tuple", "list"):
        items: list[Any] = (v["elements"] if isinstance(v, dict) else v) or []
        if kind == "list" and not items:
            return None
        return [_nested(x) for x in items]
    raise ChainError(0, f"unsupported stack entry {kind!r}")


def _stack_arg(v: StackValue) -> list[str]:
    if isinstance(v, bool) or v is None:
        raise TypeError(f"unsupported get-method argument {v!r}")
    if isinstance(v, int):
        return ["num", str(v)]
    if isinstance(v, TvmCell):
        return ["tvm.Cell", base64.b64encode(v.boc).decode()]
    if isinstance(v, TvmSlice):
        return ["tvm.Slice", base64.b64encode(v.boc).decode()]
    raise TypeError(f"unsupported get-method argument {type(v).__name__}")


def normalize_endpoint(endpoint: str) -> str:
    """``http://host:port/api/v2/`` form (accepts it without the slash or with ``jsonRPC``)."""
    e = endpoint.strip()
    if e.endswith("/jsonRPC"):
        e = e[: -len("jsonRPC")]
    return e if e.endswith("/") else e + "/"


class TonCenterClient:
    """toncenter v2 over HTTP. ``endpoint``: the API's base, e.g. ``https://toncenter.com/api/v2/``.

    Use as ``async with TonCenterClient(...) as c:`` or call :meth:`close`. A session
    passed in is not closed by the client.
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self.api_key = api_key
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> TonCenterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def _request(
        self, url: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> msgspec.Raw:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        try:
            if body is None:
                ctx = self._http().get(url, params=params, headers=headers)
            else:
                headers["Content-Type"] = "application/json"
                ctx = self._http().post(url, data=msgspec.json.encode(body), headers=headers)
            async with ctx as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChainError(0, f"{url}: {exc.__class__.__name__}: {exc}") from exc
        try:
            env = msgspec.json.decode(raw, type=_Envelope)
        except msgspec.DecodeError:
            text = raw[:200].decode(errors="replace")
            raise ChainError(
                status if status >= 400 else 0, f"not a toncenter answer: {text}"
            ) from None
        if not env.ok:
            raise ChainError(env.code or status, env.error or "unknown error")
        return env.result

    async def call(self, method: str, params: dict[str, Any] | None = None) -> msgspec.Raw:
        """Any v2 method by name, GET with query parameters (raw ``result``)."""
        q = {k: str(v) for k, v in (params or {}).items() if v is not None}
        return await self._request(self.endpoint + method, params=q)

    async def post(self, method: str, body: dict[str, Any]) -> msgspec.Raw:
        return await self._request(self.endpoint + method, body=body)

    async def json_rpc(self, method: str, params: dict[str, Any]) -> msgspec.Raw:
        """The JSON-RPC form: ``POST jsonRPC {"method", "params"}``."""
        body = {"id": 1, "jsonrpc": "2.0", "method": method, "params": params}
        return await self._request(self.endpoint + "jsonRPC", body=body)

    @staticmethod
    def _decode(raw: msgspec.Raw, typ: type[T]) -> T:
        try:
            # strict=False: toncenter sends 64-bit numbers as strings.
            return msgspec.json.decode(raw, type=typ, strict=False)
        except msgspec.ValidationError as exc:
            raise ChainError(0, f"unexpected answer: {exc}") from None

    # -- the methods Cocoon uses --

    async def get_address_information(self, address: str) -> AddressInformation:
        raw = await self.call("getAddressInformation", {"address": address})
        return self._decode(raw, AddressInformation)

    async def get_balance(self, address: str) -> int:
        return (await self.get_address_information(address)).balance

    async def send_boc(self, boc: bytes) -> None:
        """Send an external message (its BoC)."""
        await self.post("sendBoc", {"boc": base64.b64encode(boc).decode()})

    async def send_boc_return_hash(self, boc: bytes) -> str:
        """Send an external message; returns its hash (base64)."""
        raw = await self.post("sendBocReturnHash", {"boc": base64.b64encode(boc).decode()})
        return self._decode(raw, dict[str, Any])["hash"]  # type: ignore[no-any-return]

    async def run_get_method(
        self, address: str, method: str | int, stack: Sequence[StackValue] = ()
    ) -> GetMethodResult:
        """Run a get-method. A non-zero exit code is returned, not raised."""
        body = {"address": address, "method": method, "stack": [_stack_arg(v) for v in stack]}
        r = self._decode(await self.post("runGetMethod", body), _RawRunResult)
        return GetMethodResult(
            exit_code=r.exit_code,
            gas_used=r.gas_used,
            stack=[_stack_value(e) for e in r.stack],
        )

    async def get_transactions(
        self,
        address: str,
        limit: int = 10,
        *,
        lt: int | None = None,
        hash: str | None = None,
        to_lt: int | None = None,
    ) -> list[Transaction]:
        """Newest first; from (lt, hash) when given, down to (excluding) to_lt."""
        params = {"address": address, "limit": limit, "lt": lt, "hash": hash, "to_lt": to_lt}
        if lt is not None:
            params["archival"] = "true"
        return self._decode(await self.call("getTransactions", params), list[Transaction])
