"""The failover timers' defaults, each in one place, and the arithmetic that chose them.

A VRRP BACKUP takes the VIP after the Master_Down_Interval of RFC 5798 without an advert:
3 x advert interval + (256 - priority) / 256 x advert interval. An etcd follower campaigns after a
randomised 1 to 2 election timeouts without a heartbeat. Shorter timers fail over sooner and trip
sooner on a host that stalls; docs/ha.md holds the measurements on both sides (drills and the soak)
and why each value won.
"""

from __future__ import annotations

# VRRPv3 adverts every 300 ms: Master_Down_Interval 1.02 s (priority 150) to 1.08 s (priority 100).
ADVERT_INTERVAL_MS = 300
# etcd: heartbeats every 100 ms, a follower campaigns after 8 to 15 of them missed (800 ms election).
# etcd's own 1000 ms put the first write after a leader's death at 1.1-1.7 s, around the 1.5 s goal,
# not inside it; 500 ms (5 heartbeats, the tuning guide's minimum ratio) halves the failover on hosts
# with CPU to spare but set off repeated elections on starved ones (docs/ha.md): a setting for fast
# hosts, not the default.
HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 800
FAST_HOSTS_ELECTION_TIMEOUT_MS = 500
ETCD_OWN_ELECTION_TIMEOUT_MS = 1000  # the benchmarks' baseline
MIN_ELECTION_HEARTBEATS = 5
# HAProxy's apiserver checks: /readyz every second, DOWN after 3 failures (fast checks every 500 ms
# once one failed): ~2 s. A connection to an apiserver that does not answer its SYN is given up after
# 500 ms and retried on another (a LAN host answers in milliseconds; the kernel, not the apiserver,
# sends the SYN-ACK). Live-traffic errors do not count toward DOWN (`observe layer4`): a server marked
# DOWN has its sessions closed, including one waiting to be redispatched, which then fails (docs/ha.md).
HAPROXY_CHECK_INTERVAL_MS = 1000
HAPROXY_FALL = 3
HAPROXY_RISE = 2
HAPROXY_CONNECT_TIMEOUT_MS = 500
# keepalived's check of the local HAProxy, in whole seconds: keepalived before 2.3 (Debian 12's
# 2.2.7) refuses fractional script intervals and timeouts.
TRACK_INTERVAL_S = 1
TRACK_TIMEOUT_S = 1


def master_down_interval_s(advert_interval_ms: int, priority: int) -> float:
    """RFC 5798's Master_Down_Interval, as keepalived computes it (centiseconds)."""
    advert_cs = advert_interval_ms // 10
    skew_cs = (256 - priority) * advert_cs // 256
    return (3 * advert_cs + skew_cs) / 100


# How fast Kubernetes moves pods off a lost node (kubernetes.failover). The worst case is a worker
# lost together with the master leading the controller-manager:
#   pods run elsewhere after ~ leader lease + retry (a standby takes over)
#                            + node monitor grace, counted from the new leader's start
#                            + node monitor period + pod eviction toleration + the pod's start
#   = 8 + 2 + 12 + 2 + 60 + ~1 = ~85 s (Kubernetes' own: 15 + 2 + 50 + 5 + 300 = ~372 s).
# The kubelet renews its node lease every quarter of its duration (every 3 s here); a node is
# NotReady after 4 renewals missed. A kubelet whose connection died silently would need HTTP/2's
# 45 s ping timeout to notice (upstream's reason for its 50 s grace); behind the front door it does
# not: HAProxy closes the sessions of a server it marks DOWN (`on-marked-down shutdown-sessions`)
# and the new VIP holder answers the old holder's connections with a reset. NotReady nodes are
# tainted (starting their pods' toleration) at up to 1 node per second, not Kubernetes' 0.1: a lost
# rack's second node would otherwise wait 10 s more. A zone where most but not all nodes are lost
# still gets no evictions in a small cluster (the controller's own partial-disruption rule).
NODE_LEASE_DURATION_S = 12
NODE_MONITOR_GRACE_PERIOD_S = 12
NODE_MONITOR_PERIOD_S = 2
NODE_EVICTION_RATE = 1.0
MIN_MISSED_NODE_RENEWALS = 3
POD_EVICTION_TIMEOUT_S = 60
# controller-manager and scheduler leader election: a standby takes over ~lease + retry after the
# leader's master is lost; the leader steps down when it cannot renew within the deadline (an
# apiserver unreachable for 6 s: longer than the etcd and front-door failovers above).
LEADER_LEASE_S = 8
LEADER_RENEW_DEADLINE_S = 6
LEADER_RETRY_PERIOD_S = 2
