"""moto's server, with Route 53 change batches checked as Route 53 checks them.

    python moto_server.py -H 127.0.0.1 -p PORT    (moto's venv python; moto_server's arguments)

Emulator gap closed here (moto 5.2.x): `Route53Backend.change_resource_record_sets`
checks a CREATE and a DELETE against its journal of past changes, not against the
record sets the zone holds now. A CREATE over an existing name+type is applied (a
second set appears), and a DELETE whose values differ from the current ones can pass.
Real Route 53 refuses the whole batch in both cases:

    ChangeResourceRecordSets, Amazon Route 53 API Reference
    https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html
    - "CREATE: Creates a resource record set that has the specified values." /
      InvalidChangeBatch "Tried to create resource record set ... but it already exists"
    - "DELETE: Deletes an existing resource record set that has the specified values"
      (name, type, set identifier, TTL, and the values or the alias target must match)
    - "Change batches are considered transactional changes. ... If any of the changes
      in the batch fail, none of the changes are applied."

triad's DNS lease lock (a DELETE-exact + CREATE batch) relies on exactly that, so the
patch below validates the batch, in order, against the zone's current record sets
under one lock (moto's server is threaded), and applies it with moto's own code only
when every change is valid. Everything else is moto unchanged.
"""

import os
import sys
import threading

# This directory holds moto.py (scripts/test's helpers), which would shadow the
# moto package: import moto from the venv, not from here.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from moto.route53.exceptions import Route53ClientError
from moto.route53.models import Route53Backend
from moto.server import main

_original = Route53Backend.change_resource_record_sets
_batch_lock = threading.Lock()


class InvalidChangeBatch(Route53ClientError):
    """Route 53's refusal of a whole change batch, with its message."""

    def __init__(self, message):
        super().__init__("InvalidChangeBatch", message)


def _key(rrset):
    """What names a record set: name (case-insensitive, dot-terminated), type, set id."""
    name = rrset["Name"].rstrip(".").lower() + "."
    return (name, rrset["Type"], rrset.get("SetIdentifier"))


def _values(rrset):
    """What a DELETE must repeat exactly: TTL, the values (in any order), the alias."""
    records = rrset.get("ResourceRecords") or []
    values = sorted(r["Value"] if isinstance(r, dict) else r for r in records)
    alias = rrset.get("AliasTarget")
    if alias:
        alias = (
            alias.get("HostedZoneId"),
            alias.get("DNSName", "").rstrip(".").lower(),
            str(alias.get("EvaluateTargetHealth", "")).lower(),
        )
    ttl = rrset.get("TTL")
    return (None if ttl is None else str(ttl), values, alias)


def _current(zone):
    """The zone's record sets now, in the shape of a change's ResourceRecordSet."""
    return {
        _key({"Name": s.name, "Type": s.type, "SetIdentifier": s.set_identifier}): {
            "TTL": s.ttl,
            "ResourceRecords": list(s.records or []),
            "AliasTarget": s.alias_target,
        }
        for s in zone.rrsets
    }


def change_resource_record_sets(self, zoneid, change_list):
    with _batch_lock:
        sets = _current(self.get_hosted_zone(zoneid))
        for change in change_list:
            rrset = change["ResourceRecordSet"]
            key = _key(rrset)
            shown = f"[name='{key[0]}', type='{key[1]}'"
            shown += f", set-identifier='{key[2]}']" if key[2] else "]"
            action = change["Action"]
            if action == "CREATE":
                if key in sets:
                    raise InvalidChangeBatch(
                        f"[Tried to create resource record set {shown} but it already exists]"
                    )
                sets[key] = rrset
            elif action == "DELETE":
                if key not in sets:
                    raise InvalidChangeBatch(
                        f"[Tried to delete resource record set {shown} but it was not found]"
                    )
                if _values(sets[key]) != _values(rrset):
                    raise InvalidChangeBatch(
                        f"[Tried to delete resource record set {shown} but the values "
                        "provided do not match the current values]"
                    )
                del sets[key]
            elif action == "UPSERT":
                sets[key] = rrset
        return _original(self, zoneid, change_list)


Route53Backend.change_resource_record_sets = change_resource_record_sets

if __name__ == "__main__":
    main()
