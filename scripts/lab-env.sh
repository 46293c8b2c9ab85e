# Sourced by scripts/setup and scripts/test: make qemu:///system answer, and run commands
# where the lab networks live.
#
# With systemd (a normal workstation or server) the system libvirtd is used. Without systemd
# (containers, CI runners) libvirtd is started by hand inside a private network namespace,
# "restore-drill": every lab bridge then exists only in that namespace, and anything that
# talks to a guest (restore-drill, the tests) runs there via `in_lab`.
# Override: RESTORE_DRILL_NETNS=name (force a namespace) or RESTORE_DRILL_NETNS= (none).

if [ -z "${RESTORE_DRILL_NETNS+set}" ]; then
    if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
        RESTORE_DRILL_NETNS=
    else
        RESTORE_DRILL_NETNS=restore-drill
    fi
fi

in_lab() {
    # nsenter, not `ip netns exec`: only the network namespace, so what restore-drill mounts
    # (a lab's namespace name under /run/netns) stays visible to every later command, as on
    # a host with systemd.
    if [ -n "$RESTORE_DRILL_NETNS" ]; then
        nsenter --net="/run/netns/$RESTORE_DRILL_NETNS" "$@"
    else
        "$@"
    fi
}

_pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

ensure_libvirtd() {
    # What udev does on a normal Debian: /dev/kvm owned by group kvm, mode 0660. Without it
    # (containers), libvirt probes QEMU as root (KVM usable) but validates its cache as the
    # qemu user (KVM not usable), so it re-probes QEMU on every domain start: ~50 s measured.
    if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
        chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    fi
    if [ -z "$RESTORE_DRILL_NETNS" ]; then
        systemctl start virtlogd.socket libvirtd.service 2>/dev/null || systemctl start libvirtd
    else
        local ns=$RESTORE_DRILL_NETNS pid
        ip netns list | grep -qw "^$ns" || ip netns add "$ns"
        ip netns exec "$ns" ip link set lo up
        pid=$(cat /run/libvirtd.pid 2>/dev/null || true)
        if _pid_alive "$pid" && [ "$(ip netns identify "$pid")" != "$ns" ]; then
            echo "lab-env: stopping a libvirtd that runs outside namespace $ns" >&2
            kill "$pid"
            for _ in $(seq 50); do _pid_alive "$pid" || break; sleep 0.2; done
            pid=
        fi
        pgrep -x virtlogd >/dev/null || ip netns exec "$ns" virtlogd -d
        _pid_alive "$pid" || ip netns exec "$ns" libvirtd -d
    fi
    for _ in $(seq 60); do
        in_lab virsh -c qemu:///system version >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "lab-env: libvirtd did not answer on qemu:///system within 30 s" >&2
    return 3
}
