"""The libvirt hosts drills run on: the inventory (:mod:`.inventory`) and which host runs
which drill (:mod:`.placement`)."""
