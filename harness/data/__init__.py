"""Proof of the data: manifests recorded at backup time (:mod:`.manifest`, :mod:`.scan`),
a restored folder read in the guest (:mod:`.tree`) and compared (:mod:`.compare`)."""
