"""The proxy role: routes sealed requests to workers and bills from receipts."""
