"""A local cluster on one machine: PostgreSQL (replicas, shards, backups), several web and AI
instances, and two directors in front (``movierec cluster up|status|restart|down``)."""

from movierec.cluster.control import MemberStatus, admin_url_file, down, secret, status, up
from movierec.cluster.members import ClusterRecord, Member, is_running, load_record
from movierec.cluster.restart import restart
from movierec.cluster.spec import ClusterSpec, read_cluster_toml, with_topology

__all__ = [
    "ClusterRecord",
    "ClusterSpec",
    "Member",
    "MemberStatus",
    "admin_url_file",
    "down",
    "is_running",
    "load_record",
    "read_cluster_toml",
    "restart",
    "secret",
    "status",
    "up",
    "with_topology",
]
