"""`kdns explain NAME [TYPE]`: why a name answers as it does, or does not resolve.

The answer shown is real: the question runs through a `DnsServer` built from the same
configuration as `kdns serve` (`kdns.explain.run`). Around it, the pure analysis
(`kdns.explain.analyze`) reads the cluster data behind the name and says which rule of
docs/rules.md decided the answer, which endpoints were left out and why, and, for a name
that does not exist, what nearby does (`kdns.explain.typos`). `kdns.explain.model` is the
result, as JSON for tools and as text for people (`kdns.explain.render`).

Offline (`--manifests`, `kdns.explain.offline`) nothing is sent anywhere: a name that would
be forwarded says where it would go. A running kdns answers `GET /debug/explain`
(`kdns.explain.debug`), where forwarding is real and the reply says which upstream answered
and whether the cache did.
"""
