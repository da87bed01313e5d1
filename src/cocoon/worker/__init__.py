"""The worker role: opens sealed requests, runs them on a backend, seals answers back."""
