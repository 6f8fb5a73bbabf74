"""Build environments made on the host: chroot tarballs built with
mmdebstrap and the one cache directory they and VM images live in
(:mod:`.chroots`). Used by the admin CLI, the agent's VM backend and the
tests; it imports no other room."""
