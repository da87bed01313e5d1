"""Money: ledgers now; vouchers and channel state come with the chain."""
