"""The shared kernel of the command side: domain errors, input cleaning, the
aggregate lock, the HTTP kit of command endpoints and the contract of the
pages a form lives on; and the web plumbing both sides use (the client
address, the fail-open cache that counts rate limits). ``catalog`` and
``reviews`` meet here (and in the event store), never in each other."""
