"""The restored system's disk, seen from outside before it boots: inspection (what OS, which
services) and preparation of the lab's copy (the drill's key). libguestfs does the work in a
process of its own (:mod:`.agent`, run by :mod:`.appliance`); nothing here imports it."""
