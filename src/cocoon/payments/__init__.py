"""Money: vouchers (signed cumulative payment promises) and the proxy's ledger."""
