"""The root contract as the network's source of truth (DESIGN §11).

`rules` decides, without I/O, whether a peer may serve under one snapshot
of the root (its image and model lists, minimum stakes); `follower` keeps
that snapshot current by polling the root's `version` and caches the stakes
of the peers a node talks to.
"""
