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

_start_libvirtd() {
    # Under tini as a child subreaper, not `libvirtd -d`: QEMU is double-forked, so a stopped
    # VM's process is reaped by the nearest subreaper, else by PID 1. libvirt's destroy waits
    # until the process is gone, and a zombie still counts: where PID 1 is not an init that
    # reaps at once (containers, sandboxes) every destroy took 1.8 s instead of 0.2 s.
    # Waits (5 s at most) for the pid file.
    rm -f /run/libvirtd.pid
    setsid tini -s -- libvirtd </dev/null >/dev/null 2>&1 &
    for _ in $(seq 50); do [ -s /run/libvirtd.pid ] && break; sleep 0.1; done
}

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
        if ! _pid_alive "$pid"; then
            ip netns exec "$ns" bash -c "$(declare -f _start_libvirtd); _start_libvirtd"
        fi
    fi
    for _ in $(seq 60); do
        in_lab virsh -c qemu:///system version >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "lab-env: libvirtd did not answer on qemu:///system within 30 s" >&2
    return 3
}

# A second libvirt "host" on this machine, for multi-host tests: its own network namespace
# (joined to the lab namespace by a veth pair: the lab side LAB_ADDR, the host HOST_ADDR,
# both /30) and its own mount namespace (a private /run for its sockets and pid files, its own
# /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt), running virtlogd, libvirtd and
# sshd (root, key only). Paths outside those folders are the same files as here. State in
# /var/lib/restore-drill-hosts/NAME: client_key (root's key there), known_hosts (its host
# key), pids. Reached from the lab namespace as
#   qemu+ssh://root@HOST_ADDR/system?keyfile=STATE/client_key&known_hosts=STATE/known_hosts
# Usage: start_second_host NAME HOST_ADDR LAB_ADDR; stop_second_host NAME.
second_host_state() { echo "/var/lib/restore-drill-hosts/$1"; }

start_second_host() {
    local name=$1 host_addr=$2 lab_addr=$3 state ns=rdhost-$1 veth=rdh-$1
    state=$(second_host_state "$name")
    [ -n "$RESTORE_DRILL_NETNS" ] || { echo "lab-env: a second host needs the lab namespace" >&2; return 3; }
    mkdir -p "$state"/{lib,cache,log} && chmod 0755 "$state" "$state/lib"
    [ -f "$state/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C "restore-drill tests" -f "$state/client_key"
    [ -f "$state/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$state/host_key"
    cp "$state/client_key.pub" "$state/authorized_keys"
    echo "$host_addr $(cut -d' ' -f1,2 "$state/host_key.pub")" > "$state/known_hosts"
    if ! ip netns list | grep -qw "^$ns"; then
        ip netns add "$ns"
        ip netns exec "$ns" ip link set lo up
        ip link add "$veth" netns "$RESTORE_DRILL_NETNS" type veth peer name eth0 netns "$ns"
        in_lab ip addr add "$lab_addr/30" dev "$veth"
        in_lab ip link set "$veth" up
        ip netns exec "$ns" ip addr add "$host_addr/30" dev eth0
        ip netns exec "$ns" ip link set eth0 up
    fi
    local held
    held=$(cat "$state/virtlogd.pid" 2>/dev/null || true)
    if ! _pid_alive "$(cat "$state/libvirtd.pid" 2>/dev/null)" && _pid_alive "$held"; then
        # libvirtd died (or was killed) and its namespaces live on: start it again in them,
        # where it finds its running guests and transient objects (/run/libvirt) again
        nsenter -t "$held" -n -m bash -ec "$(declare -f _start_libvirtd)"'
            _start_libvirtd
            cp /run/libvirtd.pid "$1/libvirtd.pid"' sh "$state"
    elif ! _pid_alive "$(cat "$state/libvirtd.pid" 2>/dev/null)"; then
        ip netns exec "$ns" unshare -m --propagation private bash -ec "$(declare -f _start_libvirtd)"'
            state=$1
            mount -t tmpfs tmpfs /run
            mkdir -p /run/libvirt /run/lock /run/sshd
            mount --bind "$state/lib" /var/lib/libvirt
            mount --bind "$state/cache" /var/cache/libvirt
            mount --bind "$state/log" /var/log/libvirt
            virtlogd -d
            _start_libvirtd
            cp /run/libvirtd.pid "$state/libvirtd.pid"
            cp /run/virtlogd.pid "$state/virtlogd.pid"' sh "$state"
    fi
    local pid
    pid=$(cat "$state/libvirtd.pid")
    if ! _pid_alive "$(cat "$state/sshd.pid" 2>/dev/null)"; then
        nsenter -t "$pid" -n -m /usr/sbin/sshd -o ListenAddress="$host_addr" \
            -o HostKey="$state/host_key" -o AuthorizedKeysFile="$state/authorized_keys" \
            -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
            -o PidFile=/run/rdhost-sshd.pid
        for _ in $(seq 50); do
            nsenter -t "$pid" -m cat /run/rdhost-sshd.pid > "$state/sshd.pid" 2>/dev/null && break
            sleep 0.1
        done
        [ -s "$state/sshd.pid" ] || { echo "lab-env: sshd of $name did not start" >&2; return 3; }
    fi
    for _ in $(seq 60); do
        nsenter -t "$pid" -n -m virsh -c qemu:///system version >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "lab-env: the second host $name did not answer within 30 s" >&2
    return 3
}

stop_second_host() {
    local name=$1 state ns=rdhost-$1 pid
    state=$(second_host_state "$name")
    for daemon in sshd libvirtd virtlogd; do
        pid=$(cat "$state/$daemon.pid" 2>/dev/null || true)
        if _pid_alive "$pid"; then
            kill "$pid"
            for _ in $(seq 50); do _pid_alive "$pid" || break; sleep 0.1; done
        fi
        rm -f "$state/$daemon.pid"
    done
    # QEMU processes of its guests, if any were left (they would hold the namespace)
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
}
