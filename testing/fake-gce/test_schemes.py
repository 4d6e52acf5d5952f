"""Unit tests of the fake's load-balancing semantics (INTERNAL addresses, rules and
backend services, balancing modes): python3 -m unittest (from this folder)."""

import ipaddress
import unittest

from fake_gce import COMPUTE, ApiError, Api, Cloud

P = "p"
REGION = "regions/us-central1"
SUBNET = "projects/p/regions/us-central1/subnetworks/default"


class Schemes(unittest.TestCase):
    def setUp(self):
        self.cloud = Cloud()
        self.cloud.ensure_project(P)
        self.api = Api(self.cloud)
        zone = "zones/us-central1-a"
        self.insert("instanceGroups", zone, {"name": "g"}, key="us-central1-a")
        self.group = COMPUTE + "projects/p/%s/instanceGroups/g" % zone

    def insert(self, base, scope, body, key=None):
        prefix = "projects/%s/%s/%s" % (P, scope, base)
        self.api.insert(base, P, scope, key, prefix, body, {})
        return self.cloud.resources["%s/%s" % (prefix, body["name"])]

    def service(self, name, scheme, mode, scope=REGION, **extra):
        backend = dict({"group": self.group, "balancingMode": mode}, **extra)
        return self.insert("backendServices", scope, {
            "name": name, "loadBalancingScheme": scheme, "backends": [backend]})

    def vip(self, name="vip", purpose="SHARED_LOADBALANCER_VIP"):
        body = {"name": name, "addressType": "INTERNAL", "subnetwork": SUBNET}
        if purpose:
            body["purpose"] = purpose
        return self.insert("addresses", REGION, body)

    def rule(self, name, port, bs, ip, scheme="INTERNAL"):
        return self.insert("forwardingRules", REGION, {
            "name": name, "loadBalancingScheme": scheme, "ports": [port],
            "backendService": bs, "IPAddress": ip, "subnetwork": SUBNET})

    def test_an_internal_address_comes_from_its_subnetwork(self):
        a = self.vip()
        self.assertIn(ipaddress.ip_address(a["address"]), ipaddress.ip_network("10.128.0.0/20"))
        with self.assertRaises(ApiError):
            self.insert("addresses", REGION, {"name": "x", "addressType": "INTERNAL"})
        with self.assertRaises(ApiError):
            self.insert("addresses", REGION, {"name": "y", "subnetwork": SUBNET})

    def test_internal_services_balance_by_connection(self):
        with self.assertRaises(ApiError):
            self.service("bs", "INTERNAL", "UTILIZATION")
        self.service("bs", "INTERNAL", "CONNECTION")

    def test_one_group_needs_compatible_modes(self):
        self.service("ilb", "INTERNAL", "CONNECTION")
        with self.assertRaises(ApiError):
            self.service("web", "EXTERNAL_MANAGED", "UTILIZATION", scope="global")
        with self.assertRaises(ApiError):
            self.service("web", "EXTERNAL_MANAGED", "RATE", scope="global")  # no maximum
        self.service("web", "EXTERNAL_MANAGED", "RATE", scope="global", maxRatePerInstance=1.0)

    def test_rules_match_the_scheme_and_share_only_a_shared_vip(self):
        bs = self.service("bs", "INTERNAL", "CONNECTION")["selfLink"]
        ext = self.insert("addresses", REGION, {"name": "ext"})["address"]
        with self.assertRaises(ApiError):
            self.rule("r0", "9345", bs, ext)
        with self.assertRaises(ApiError):
            self.rule("r0", "9345", bs, self.vip("v0")["address"], scheme="EXTERNAL")
        plain = self.vip("plain", purpose=None)["address"]
        self.rule("p1", "9345", bs, plain)
        with self.assertRaises(ApiError):
            self.rule("p2", "6443", bs, plain)
        shared = self.vip()["address"]
        self.rule("s1", "9345", bs, shared)
        with self.assertRaises(ApiError):
            self.rule("s2", "9345", bs, shared)
        self.rule("s3", "6443", bs, shared)


if __name__ == "__main__":
    unittest.main()
