"""Evidence bundles: one answer's receipt, its worker's attestation and what it cost, in
one file that anyone can check offline (`cocoon verify`)."""
