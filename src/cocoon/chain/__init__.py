"""TON: the toncenter v2 client and the local chain (contracts live in ``contracts/``)."""
