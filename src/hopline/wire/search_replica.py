"""Supernode-to-supernode copies of public profiles (command id 0x0037).

==========  ==================  ================================================
id          name                purpose
==========  ==================  ================================================
0x0037      profile.replica     SN to SN: index these profiles (the terms you own)
==========  ==================  ================================================

A client's :class:`~hopline.wire.directory.ProfilePublish` reaches its home
supernode, which checks that the profile is the client's own and then sends
it, in a :class:`ProfileReplica`, to the owners of the slots of its search
terms. The same message hands profiles over to a slot's new owner when
membership changes. Receivers accept it only from certified supernodes.
"""

from __future__ import annotations

from hopline.wire.directory import PublicProfile
from hopline.wire.schema import Message, param
from hopline.wire.types import Kind, ParamType

UINT, OBJECTS = ParamType.UINT, ParamType.OBJECTS
MAX_REPLICA_PROFILES = 50


class ProfileReplica(Message, command=0x0037, kind=Kind.REQUEST, name="profile.replica"):
    """SN to SN: index these profiles (at most :data:`MAX_REPLICA_PROFILES`)."""

    profiles: tuple[PublicProfile, ...] = param(1, OBJECTS, record=PublicProfile, repeated=True)


class ProfileReplicaReply(Message, command=0x0037, kind=Kind.REPLY, name="profile.replica"):
    """How many profiles of a :class:`ProfileReplica` were indexed or refused."""

    indexed: int = param(1, UINT, default=0, doc="profiles now held (or withdrawn)")
    refused: int = param(2, UINT, default=0)


__all__ = ["MAX_REPLICA_PROFILES", "ProfileReplica", "ProfileReplicaReply"]
