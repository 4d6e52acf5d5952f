#!/usr/bin/env python3
"""A small fake of Compute Engine and Cloud DNS for triad's tests.

No GCE emulator exists, so triad carries this one -- and keeps it honest:

* Routing comes from Google's discovery documents (``compute.v1.json`` and
  ``dns.v1.json``): a request matches a method by HTTP verb and path template,
  unknown query parameters are refused, and EVERY request body is validated
  against the method's request schema (HTTP 400 ``invalid`` as Google answers).
* EVERY response body is validated against the method's response schema; a
  violation is a bug in this fake: it answers 500, logs loudly and counts it
  (``GET /_fake/violations``), so tests can assert there were none.
* Resource semantics: names are unique (409 ``alreadyExists``), references must
  exist (404 ``notFound``), a resource another one refers to cannot be deleted
  (400 ``resourceInUseByAnotherResource``), inserts are deduplicated by
  ``requestId``, lists filter on ``labels.KEY=VALUE``, operations go RUNNING ->
  DONE after a few polls (or a short time), instances PROVISIONING -> RUNNING,
  Cloud DNS changes pending -> done.
* Load-balancing schemes as Google documents them (see ``Api.check_backend_service``
  and ``Api.prepare_forwarding_rule``): an INTERNAL address is taken from its
  subnetwork's range, a forwarding rule's scheme matches its backend service's and
  its address's type, internal rules share an address only when its purpose is
  SHARED_LOADBALANCER_VIP, balancing modes follow the backend service's scheme and
  stay compatible across the backend services an instance group serves.
* Errors look like Google's: ``{"error": {"code", "message", "errors": [{"reason",
  "domain", "message"}], "status"}}``.

Only the methods triad uses are served; anything else answers 501.

Control endpoints (not part of any Google API):
  GET  /_fake/health            readiness
  POST /_fake/reset             forget every project
  POST /_fake/seed              {"project", "managedZones": [...], "sslCertificates": [...]}
  POST /_fake/fail-next         {"method": "compute.instances.insert" | "*", "code": 429,
                                 "reason": "rateLimitExceeded", "count": 1,
                                 "project": P (optional: only that project's calls)}
  GET  /_fake/violations        response-schema violations seen so far
  GET  /_fake/state?project=P   every resource of a project (for test assertions)
  GET  /_fake/calls?project=P   method ids called, in order
  POST /_fake/token             an OAuth token endpoint (any grant -> a bearer token),
                                for the `token_uri` of a test credentials file
  GET  /_fake/tokens            how many tokens were handed out

Usage: fake_gce.py --discovery DIR [--host 127.0.0.1] [--port 0] [--port-file F]
"""

import argparse
import ipaddress
import json
import random
import re
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from schema import Validator

COMPUTE = "https://www.googleapis.com/compute/v1/"
REGIONS = {"us-central1": ["us-central1-a", "us-central1-b", "us-central1-c"]}
MACHINE_TYPES = ["e2-small", "e2-medium", "e2-standard-2", "e2-standard-4", "e2-standard-8",
                 "n2-standard-2", "n2-standard-4", "n2-standard-8"]
IMAGES = {
    "debian-cloud": [("debian-12-bookworm-v20250101", "debian-12")],
    "ubuntu-os-cloud": [("ubuntu-2204-jammy-v20250101", "ubuntu-2204-lts"),
                        ("ubuntu-2404-noble-amd64-v20250101", "ubuntu-2404-lts-amd64")],
}
# Cipher suites each SSL policy profile enables (abridged from Google's list).
SSL_FEATURES = {
    "COMPATIBLE": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"],
    "MODERN": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    "RESTRICTED": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
}
OP_POLLS = 2          # operation GETs answered RUNNING before DONE
OP_SECONDS = 3.0      # ... or this long after the insert, whichever comes first
CHANGE_POLLS = 1      # Cloud DNS change GETs answered pending before done

STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}


def log(*args):
    print("[fake-gce]", *args, file=sys.stderr, flush=True)


class ApiError(Exception):
    """An error answered the way Google's front ends answer it."""

    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self, domain="global"):
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{"message": self.message, "domain": domain,
                                      "reason": self.reason}],
                          "status": STATUS_NAMES.get(self.code, "UNKNOWN")}}


def not_found(link):
    return ApiError(404, "notFound", "The resource '%s' was not found" % link)


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03d-00:00" % (int(t * 1000) % 1000)


def new_id():
    return str(random.randrange(10**18, 2**63))


# ---------------------------------------------------------------- routing ---

class Route:
    def __init__(self, api, method, validator, global_params):
        self.api = api
        self.id = method["id"]
        self.verb = method["httpMethod"]
        self.api_version = method.get("apiVersion")
        self.request = (method.get("request") or {}).get("$ref")
        self.response = (method.get("response") or {}).get("$ref")
        self.params = dict(global_params)
        self.params.update(method.get("parameters", {}))
        self.validator = validator
        path = method.get("flatPath") or method["path"]
        prefix = {"compute": "compute/v1/", "dns": ""}[api]
        if not path.startswith(prefix):
            path = prefix + path
        pattern = re.escape("/" + path)
        pattern = re.sub(r"\\\{\\\+([A-Za-z0-9_]+)\\\}", r"(?P<\1>.+)", pattern)
        pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", pattern)
        self.regex = re.compile("^" + pattern + "$")


def load_routes(directory):
    routes = []
    validators = {}
    for api in ("compute", "dns"):
        with open("%s/%s.v1.json" % (directory, api)) as f:
            doc = json.load(f)
        validator = Validator(doc)
        validators[api] = validator
        global_params = doc.get("parameters", {})

        def walk(resources):
            for res in resources.values():
                for method in res.get("methods", {}).values():
                    routes.append(Route(api, method, validator, global_params))
                walk(res.get("resources", {}))

        walk(doc.get("resources", {}))
    return routes, validators


# ------------------------------------------------------------------ state ---

def link_path(ref, project):
    """A reference (full URL, partial path or bare name) as 'projects/P/...'."""
    for prefix in ("https://www.googleapis.com/compute/v1/",
                   "https://compute.googleapis.com/compute/v1/", "compute/v1/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    ref = ref.lstrip("/")
    if not ref.startswith("projects/"):
        ref = "projects/%s/%s" % (project, ref)
    return ref


class Cloud:
    """Every project's resources, behind one lock."""

    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        with self.lock:
            # path 'projects/P/<scope>/<collection>/<name>' -> resource dict
            self.resources = {}
            self.members = {}         # instance group path -> set of instance paths
            self.ops = {}             # op path -> op record
            self.request_ids = {}     # (project, requestId) -> op path
            self.zones = {}           # (project, managedZone) -> zone record
            self.changes = {}         # (project, managedZone, id) -> change record
            self.projects = set()
            self.failures = []        # pending injected failures
            self.violations = []
            self.calls = {}           # project -> [method id]
            self.token_requests = 0   # POSTs to /_fake/token

    # -- projects and seeds
    def ensure_project(self, project):
        if project in self.projects:
            return
        self.projects.add(project)
        for pr, images in IMAGES.items():
            for name, family in images:
                path = "projects/%s/global/images/%s" % (pr, name)
                if path not in self.resources:
                    self.resources[path] = {
                        "kind": "compute#image", "id": new_id(), "name": name, "family": family,
                        "status": "READY", "creationTimestamp": now_rfc3339(),
                        "selfLink": COMPUTE + path, "diskSizeGb": "10", "architecture": "X86_64"}
        net = "projects/%s/global/networks/default" % project
        self.resources[net] = {"kind": "compute#network", "id": new_id(), "name": "default",
                               "autoCreateSubnetworks": True, "selfLink": COMPUTE + net,
                               "creationTimestamp": now_rfc3339(), "subnetworks": []}
        for region in REGIONS:
            sub = "projects/%s/regions/%s/subnetworks/default" % (project, region)
            self.resources[sub] = {"kind": "compute#subnetwork", "id": new_id(),
                                   "name": "default", "network": COMPUTE + net,
                                   "ipCidrRange": "10.128.0.0/20", "region": COMPUTE +
                                   "projects/%s/regions/%s" % (project, region),
                                   "selfLink": COMPUTE + sub}
            self.resources[net]["subnetworks"].append(COMPUTE + sub)

    def take_failure(self, method_id, project):
        for f in self.failures:
            if f["method"] in ("*", method_id) and f.get("project") in (None, project):
                f["count"] -= 1
                if f["count"] <= 0:
                    self.failures.remove(f)
                return f
        return None

    # -- operations
    def operation(self, project, scope, kind, target, verb, request_id=None, on_done=None):
        name = "operation-%d-%016x" % (int(time.time() * 1000), random.getrandbits(64))
        path = "projects/%s/%s/operations/%s" % (project, scope, name)
        op = {"kind": "compute#operation", "id": new_id(), "name": name,
              "operationType": verb, "targetLink": COMPUTE + target,
              "targetId": (self.resources.get(target) or {}).get("id", new_id()),
              "status": "RUNNING", "progress": 0, "user": "fake@triad.invalid",
              "insertTime": now_rfc3339(), "startTime": now_rfc3339(),
              "selfLink": COMPUTE + path}
        if scope.startswith("zones/"):
            op["zone"] = COMPUTE + "projects/%s/%s" % (project, scope)
        elif scope.startswith("regions/"):
            op["region"] = COMPUTE + "projects/%s/%s" % (project, scope)
        self.ops[path] = {"op": op, "polls": 0, "born": time.time(), "on_done": on_done}
        if request_id:
            self.request_ids[(project, request_id)] = path
        return op

    def advance_ops(self):
        """Finish the operations whose time is up (also when nobody polls them)."""
        for rec in self.ops.values():
            if rec["op"]["status"] != "DONE" and time.time() - rec["born"] >= OP_SECONDS:
                self.finish(rec)

    def finish(self, rec):
        op = rec["op"]
        op["status"] = "DONE"
        op["progress"] = 100
        op["endTime"] = now_rfc3339()
        if rec["on_done"]:
            rec["on_done"]()
            rec["on_done"] = None

    def get_op(self, path):
        rec = self.ops.get(path)
        if rec is None:
            raise not_found(path)
        if rec["op"]["status"] != "DONE":
            rec["polls"] += 1
            if rec["polls"] > OP_POLLS:
                self.finish(rec)
        return rec["op"]

    # -- references
    def check_ref(self, project, ref, what):
        path = link_path(ref, project)
        if path not in self.resources:
            raise ApiError(404, "notFound", "The resource '%s' was not found" % path)
        return COMPUTE + path

    def users_of(self, path):
        link = COMPUTE + path
        users = []
        for other, res in self.resources.items():
            if other != path and link in _strings(res, skip=("selfLink",)):
                users.append(other)
        return users


def _strings(value, skip=()):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, skip)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in skip:
                yield from _strings(v, skip)


# The reference fields of each collection, as (path in the body, is a list).
REFS = {
    "firewalls": [("network", False)],
    "instances": [("networkInterfaces[].network", False), ("networkInterfaces[].subnetwork", False),
                  ("disks[].initializeParams.sourceImage", False)],
    "instanceGroups": [("network", False)],
    "addresses": [("subnetwork", False)],
    "backendServices": [("healthChecks", True), ("backends[].group", False)],
    "forwardingRules": [("backendService", False), ("target", False), ("network", False),
                        ("subnetwork", False)],
    "urlMaps": [("defaultService", False)],
    "targetHttpsProxies": [("urlMap", False), ("sslCertificates", True), ("sslPolicy", False)],
    "targetHttpProxies": [("urlMap", False)],
}


def _get_path(body, dotted):
    """Yield (container, key) pairs for a dotted path with [] list steps."""
    parts = dotted.split(".")

    def walk(node, i):
        if i == len(parts) - 1:
            key = parts[i]
            if isinstance(node, dict) and key in node:
                yield node, key
            return
        key = parts[i]
        many = key.endswith("[]")
        key = key[:-2] if many else key
        if not isinstance(node, dict) or key not in node:
            return
        child = node[key]
        for c in (child if many and isinstance(child, list) else [child]):
            yield from walk(c, i + 1)

    yield from walk(body, 0)


# --------------------------------------------------------------- handlers ---

class Api:
    def __init__(self, cloud):
        self.cloud = cloud

    def handle(self, route, params, query, body):
        c = self.cloud
        project = params.get("project", "")
        c.ensure_project(project)
        c.calls.setdefault(project, []).append(route.id)
        c.advance_ops()
        mid = route.id
        if route.api == "dns":
            return self.dns(mid, params, query, body, project)
        service, collection, verb = mid.split(".")
        scope, scope_key = "global", None
        if "zone" in params:
            scope, scope_key = "zones/" + params["zone"], params["zone"]
            if not any(params["zone"] in z for z in REGIONS.values()):
                raise ApiError(400, "invalid", "Invalid value for field 'zone': '%s'. Unknown zone."
                               % params["zone"])
        elif "region" in params and collection != "regions":
            scope, scope_key = "regions/" + params["region"], params["region"]
            if params["region"] not in REGIONS:
                raise ApiError(400, "invalid", "Invalid value for field 'region': '%s'. Unknown "
                               "region." % params["region"])
        # regional variants share the semantics of the global collection
        base = {"regionHealthChecks": "healthChecks", "regionBackendServices": "backendServices",
                "globalAddresses": "addresses", "globalForwardingRules": "forwardingRules"
                }.get(collection, collection)
        coll_path = {"regionHealthChecks": "healthChecks",
                     "regionBackendServices": "backendServices",
                     "globalAddresses": "addresses",
                     "globalForwardingRules": "forwardingRules"}.get(collection, collection)
        prefix = "projects/%s/%s/%s" % (project, scope, coll_path)

        if collection in ("zoneOperations", "regionOperations", "globalOperations"):
            return c.get_op("projects/%s/%s/operations/%s" % (project, scope, params["operation"]))
        if collection == "regions" and verb == "get":
            region = params["region"]
            if region not in REGIONS:
                raise not_found("projects/%s/regions/%s" % (project, region))
            return {"kind": "compute#region", "id": "1000", "name": region, "status": "UP",
                    "selfLink": COMPUTE + "projects/%s/regions/%s" % (project, region),
                    "zones": [COMPUTE + "projects/%s/zones/%s" % (project, z)
                              for z in REGIONS[region]]}
        if collection == "images" and verb == "getFromFamily":
            images = [r for p, r in c.resources.items()
                      if p.startswith("projects/%s/global/images/" % project)
                      and r.get("family") == params["family"]]
            if not images:
                raise not_found("projects/%s/global/images/family/%s" % (project, params["family"]))
            return images[-1]
        if collection == "instanceGroups" and verb in ("addInstances", "removeInstances",
                                                       "listInstances"):
            return self.group_members(verb, project, scope, prefix + "/" + params["instanceGroup"],
                                      body, query)

        name_param = {"instances": "instance", "firewalls": "firewall", "addresses": "address",
                      "healthChecks": "healthCheck", "backendServices": "backendService",
                      "forwardingRules": "forwardingRule", "instanceGroups": "instanceGroup",
                      "urlMaps": "urlMap", "targetHttpsProxies": "targetHttpsProxy",
                      "targetHttpProxies": "targetHttpProxy", "networks": "network",
                      "images": "image", "sslCertificates": "sslCertificate",
                      "sslPolicies": "sslPolicy",
                      "subnetworks": "subnetwork"}.get(base)
        if verb == "get":
            path = "%s/%s" % (prefix, params[name_param])
            if base == "images":
                path = "projects/%s/global/images/%s" % (project, params["image"])
            res = c.resources.get(path)
            if res is None:
                raise not_found(path)
            return res
        if verb == "list":
            return self.list(collection, prefix, query)
        if verb == "insert":
            return self.insert(base, project, scope, scope_key, prefix, body, query)
        if verb == "delete":
            return self.delete(base, project, scope, "%s/%s" % (prefix, params[name_param]),
                               query)
        if verb == "setSslPolicy" and base == "targetHttpsProxies":
            path = "%s/%s" % (prefix, params[name_param])
            res = c.resources.get(path)
            if res is None:
                raise not_found(path)
            ref = body.get("sslPolicy")
            if ref:
                res["sslPolicy"] = c.check_ref(project, ref, "sslPolicy")
            else:
                res.pop("sslPolicy", None)
            res["fingerprint"] = "%016x" % random.getrandbits(64)
            return c.operation(project, scope, base, path, "setSslPolicy", query.get("requestId"))
        if verb == "aggregatedList":
            return self.aggregated(collection, project, query)
        if verb == "setLabels":
            path = "%s/%s" % (prefix, params.get(name_param) or params["resource"])
            res = c.resources.get(path)
            if res is None:
                raise not_found(path)
            if body.get("labelFingerprint") != res.get("labelFingerprint"):
                raise ApiError(412, "conditionNotMet", "Labels fingerprint either invalid or "
                               "resource labels have changed")
            res["labels"] = dict(body.get("labels") or {})
            res["labelFingerprint"] = "%016x" % random.getrandbits(64)
            return c.operation(project, scope, base, path, "setLabels", query.get("requestId"))
        if verb == "setSslCertificates" and base == "targetHttpsProxies":
            path = "%s/%s" % (prefix, params[name_param])
            res = c.resources.get(path)
            if res is None:
                raise not_found(path)
            certs = body.get("sslCertificates") or []
            if not certs:
                raise ApiError(400, "invalid", "Invalid value for field "
                               "'sslCertificates': at least one certificate is required")
            res["sslCertificates"] = [c.check_ref(project, ref, "sslCertificates")
                                      for ref in certs]
            res["fingerprint"] = "%016x" % random.getrandbits(64)
            return c.operation(project, scope, base, path, "setSslCertificates",
                               query.get("requestId"))
        if verb == "patch" and base in ("backendServices", "healthChecks", "firewalls"):
            path = "%s/%s" % (prefix, params[name_param])
            res = c.resources.get(path)
            if res is None:
                raise not_found(path)
            patched = json.loads(json.dumps(res))
            patched.update(body)
            self.check_refs(base, project, patched)
            if base == "backendServices":
                self.check_backend_service(project, path, patched)
            c.resources[path] = patched
            if "fingerprint" in res:
                patched["fingerprint"] = "%016x" % random.getrandbits(64)
            return c.operation(project, scope, base, path, "patch", query.get("requestId"))
        raise ApiError(501, "notImplemented", "the fake does not serve %s" % mid)

    def check_refs(self, base, project, body):
        for dotted, many in REFS.get(base, []):
            for holder, key in list(_get_path(body, dotted)):
                value = holder[key]
                if base == "instances" and key == "sourceImage":
                    holder[key] = self.resolve_image(value, project)
                elif many:
                    holder[key] = [self.cloud.check_ref(project, v, key) for v in value]
                else:
                    holder[key] = self.cloud.check_ref(project, value, key)

    def resolve_image(self, ref, project):
        path = link_path(ref, project)
        m = re.match(r"^projects/([^/]+)/global/images/family/([^/]+)$", path)
        if m:
            images = [p for p, r in self.cloud.resources.items()
                      if p.startswith("projects/%s/global/images/" % m.group(1))
                      and r.get("family") == m.group(2)]
            if not images:
                raise ApiError(404, "notFound", "The resource '%s' was not found" % path)
            return COMPUTE + images[-1]
        return self.cloud.check_ref(project, ref, "sourceImage")

    def insert(self, base, project, scope, scope_key, prefix, body, query):
        c = self.cloud
        request_id = query.get("requestId")
        if request_id:
            if not re.match(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", request_id) \
                    or set(request_id) <= set("0-"):
                raise ApiError(400, "invalid", "Invalid value for field 'requestId': '%s'. "
                               "Must be a valid UUID." % request_id)
            seen = c.request_ids.get((project, request_id))
            if seen is not None:
                return c.ops[seen]["op"]
        name = body.get("name")
        if not name or not re.match(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$", name):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.name': '%s'. Must be "
                           "a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'" % name)
        path = "%s/%s" % (prefix, name)
        if path in c.resources:
            raise ApiError(409, "alreadyExists", "The resource '%s' already exists" % path)
        res = json.loads(json.dumps(body))
        self.check_refs(base, project, res)
        res.update({"kind": "compute#" + {"addresses": "address", "healthChecks": "healthCheck",
                                          "backendServices": "backendService",
                                          "forwardingRules": "forwardingRule",
                                          "instanceGroups": "instanceGroup",
                                          "urlMaps": "urlMap", "instances": "instance",
                                          "firewalls": "firewall",
                                          "targetHttpsProxies": "targetHttpsProxy",
                                          "targetHttpProxies": "targetHttpProxy",
                                          "sslCertificates": "sslCertificate",
                                          "sslPolicies": "sslPolicy"}[base],
                    "id": new_id(), "creationTimestamp": now_rfc3339(),
                    "selfLink": COMPUTE + path})
        if scope.startswith("zones/"):
            res["zone"] = COMPUTE + "projects/%s/%s" % (project, scope)
        elif scope.startswith("regions/"):
            res["region"] = COMPUTE + "projects/%s/%s" % (project, scope)
        on_done = None
        if base == "instances":
            self.prepare_instance(project, scope_key, res)

            def on_done(res=res):
                res["status"] = "RUNNING"
        elif base == "addresses":
            res.setdefault("addressType", "EXTERNAL")
            res["status"] = "RESERVED"
            if res["addressType"] == "INTERNAL":
                res["address"] = self.internal_address(project, scope, res)
            else:
                if res.get("subnetwork") or res.get("purpose") == "SHARED_LOADBALANCER_VIP":
                    raise ApiError(400, "invalid", "Invalid value for field 'resource': a "
                                   "subnetwork and purpose SHARED_LOADBALANCER_VIP are for "
                                   "INTERNAL addresses only.")
                res["address"] = "203.0.113.%d" % random.randrange(1, 255) \
                    if scope != "global" else "198.51.100.%d" % random.randrange(1, 255)
        elif base == "backendServices":
            self.check_backend_service(project, path, res)
            res["fingerprint"] = "%016x" % random.getrandbits(64)
        elif base == "forwardingRules":
            self.prepare_forwarding_rule(project, scope, res)
        elif base == "instanceGroups":
            res["size"] = 0
            res["fingerprint"] = "%016x" % random.getrandbits(64)
            c.members[path] = set()
        elif base == "urlMaps":
            res["fingerprint"] = "%016x" % random.getrandbits(64)
        elif base == "sslPolicies":
            # Google's defaults, and the features a profile enables (output only).
            res.setdefault("profile", "COMPATIBLE")
            res.setdefault("minTlsVersion", "TLS_1_0")
            if res["profile"] == "CUSTOM" and not res.get("customFeatures"):
                raise ApiError(400, "invalid", "Invalid value for field "
                               "'resource.customFeatures': a CUSTOM profile needs features")
            res["enabledFeatures"] = SSL_FEATURES[res["profile"]] \
                if res["profile"] != "CUSTOM" else list(res["customFeatures"])
            res["fingerprint"] = "%016x" % random.getrandbits(64)
        if "labels" in res:
            res["labelFingerprint"] = "%016x" % random.getrandbits(64)
        c.resources[path] = res
        return c.operation(project, scope, base, path, "insert", request_id, on_done)

    def prepare_instance(self, project, zone, res):
        mt = res.get("machineType", "")
        m = re.match(r"^(?:.*/)?zones/([^/]+)/machineTypes/([^/]+)$", mt)
        if not m or m.group(1) != zone or m.group(2) not in MACHINE_TYPES:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.machineType': '%s'. "
                           "Machine type with name '%s' does not exist in zone '%s'."
                           % (mt, mt.rsplit("/", 1)[-1], zone))
        res["machineType"] = COMPUTE + "projects/%s/zones/%s/machineTypes/%s" % (
            project, zone, m.group(2))
        disks = res.get("disks") or []
        if not any(d.get("boot") for d in disks):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.disks': ''. "
                           "Boot disk must be specified.")
        for i, d in enumerate(disks):
            d.update({"kind": "compute#attachedDisk", "index": i, "type": "PERSISTENT",
                      "mode": "READ_WRITE", "deviceName": d.get("deviceName") or "persistent-disk-%d" % i,
                      "source": COMPUTE + "projects/%s/zones/%s/disks/%s" % (project, zone,
                                                                             res["name"])})
        nics = res.get("networkInterfaces") or []
        if not nics:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.networkInterfaces': "
                           "''. At least one network interface is required.")
        for i, nic in enumerate(nics):
            nic["name"] = "nic%d" % i
            nic["networkIP"] = "10.128.0.%d" % random.randrange(2, 250)
            nic.setdefault("subnetwork", COMPUTE + "projects/%s/regions/%s/subnetworks/default"
                           % (project, zone.rsplit("-", 1)[0]))
            nic["kind"] = "compute#networkInterface"
        res["status"] = "PROVISIONING"
        res["cpuPlatform"] = "Unknown CPU Platform"

    def prepare_forwarding_rule(self, project, scope, res):
        c = self.cloud
        if not res.get("backendService") and not res.get("target"):
            raise ApiError(400, "invalid", "Invalid value for field 'resource': a forwarding rule "
                           "needs a backendService or a target.")
        scheme = res.setdefault("loadBalancingScheme", "EXTERNAL")
        internal = scheme == "INTERNAL"
        if internal and not scope.startswith("regions/"):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.loadBalancingScheme':"
                           " 'INTERNAL'. An internal passthrough forwarding rule is regional.")
        # A passthrough rule and its backend service share one scheme ("Each load
        # balancing product uses one load balancing scheme for its forwarding rules
        # and backend services": cloud.google.com/load-balancing/docs/backend-service).
        if res.get("backendService"):
            bs = c.resources[link_path(res["backendService"][len(COMPUTE):], project)]
            if bs.get("loadBalancingScheme", "EXTERNAL") != scheme:
                raise ApiError(400, "invalid", "Invalid value for field "
                               "'resource.backendService': the backend service's load "
                               "balancing scheme %s does not match the forwarding rule's %s."
                               % (bs.get("loadBalancingScheme", "EXTERNAL"), scheme))
        # "assign up to five ports to the forwarding rule"
        # (cloud.google.com/load-balancing/docs/internal/multiple-forwarding-rules-same-ip).
        if len(res.get("ports") or []) > 5:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.ports': at most "
                           "5 ports.")
        ip = res.get("IPAddress")
        owner = None
        if ip:
            if "/" in ip:
                owner = c.resources[link_path(c.check_ref(project, ip, "IPAddress")[
                    len(COMPUTE):], project)]
                res["IPAddress"] = owner["address"]
            else:
                owners = [r for p, r in c.resources.items()
                          if p.startswith("projects/%s/%s/addresses/" % (project, scope))
                          and r.get("address") == ip]
                if not owners:
                    raise ApiError(400, "invalid", "Invalid value for field "
                                   "'resource.IPAddress': '%s'. The address is not reserved "
                                   "in this project." % ip)
                owner = owners[0]
        elif internal:
            res["IPAddress"] = self.internal_address(project, scope, res)
        else:
            res["IPAddress"] = "203.0.113.%d" % random.randrange(1, 255)
        if owner is not None and (owner.get("addressType", "EXTERNAL") == "INTERNAL") != internal:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.IPAddress': '%s'. "
                           "An %s forwarding rule needs an %s address."
                           % (res["IPAddress"], scheme, "INTERNAL" if internal else "EXTERNAL"))
        if internal:
            sub = res.get("subnetwork") or (owner or {}).get("subnetwork")
            if sub:
                net = ipaddress.ip_network(c.resources[link_path(sub[len(COMPUTE):], project)]
                                           ["ipCidrRange"])
                if ipaddress.ip_address(res["IPAddress"]) not in net:
                    raise ApiError(400, "invalid", "Invalid value for field "
                                   "'resource.IPAddress': '%s' is not in subnetwork '%s'."
                                   % (res["IPAddress"], sub))
                res["subnetwork"] = sub
            # Internal rules share an address only when its purpose is
            # SHARED_LOADBALANCER_VIP, and then on other ports (same page as above).
            sharing = [r for p, r in c.resources.items()
                       if p.startswith("projects/%s/%s/forwardingRules/" % (project, scope))
                       and r.get("loadBalancingScheme") == "INTERNAL"
                       and r.get("IPAddress") == res["IPAddress"]]
            if sharing and (owner or {}).get("purpose") != "SHARED_LOADBALANCER_VIP":
                raise ApiError(400, "invalid", "Invalid value for field 'resource.IPAddress': "
                               "'%s' is used by forwarding rule '%s'; internal forwarding rules "
                               "share an address only with purpose SHARED_LOADBALANCER_VIP."
                               % (res["IPAddress"], sharing[0]["name"]))
            taken = {p for r in sharing for p in r.get("ports") or []}
            if taken & set(res.get("ports") or []):
                raise ApiError(400, "invalid", "Invalid value for field 'resource.ports': a "
                               "forwarding rule on '%s' already has ports %s."
                               % (res["IPAddress"], sorted(taken)))
        res.setdefault("IPProtocol", "TCP")
        res["fingerprint"] = "%016x" % random.getrandbits(64)

    def internal_address(self, project, scope, res):
        """A free address of the subnetwork `res` names, in the region `scope`.
        Google takes an INTERNAL address from a subnetwork's primary range
        (cloud.google.com/compute/docs/ip-addresses/reserve-static-internal-ip-address);
        the fake asks for the subnetwork explicitly (triad always gives it)."""
        c = self.cloud
        sub_link = res.get("subnetwork")
        if not scope.startswith("regions/") or not sub_link:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.subnetwork': an "
                           "INTERNAL address is regional and the fake needs its subnetwork.")
        sub = c.resources[link_path(sub_link[len(COMPUTE):], project)]
        if not sub.get("region", "").endswith("/" + scope):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.subnetwork': '%s' "
                           "is not in %s." % (sub_link, scope))
        net = ipaddress.ip_network(sub["ipCidrRange"])
        used = set()
        for r in c.resources.values():
            used.add(r.get("address"))
            used.add(r.get("IPAddress"))
            for nic in r.get("networkInterfaces") or []:
                used.add(nic.get("networkIP"))
        if res.get("address"):
            if ipaddress.ip_address(res["address"]) not in net or res["address"] in used:
                raise ApiError(400, "invalid", "Invalid value for field 'resource.address': "
                               "'%s' is not free in subnetwork '%s'." % (res["address"], sub_link))
            return res["address"]
        hosts = list(net.hosts())
        # Google keeps the first two and the last two addresses of a range.
        for _ in range(1000):
            ip = str(hosts[random.randrange(2, len(hosts) - 2)])
            if ip not in used:
                return ip
        raise ApiError(400, "ipSpaceExhausted", "No free address in subnetwork '%s'." % sub_link)

    def check_backend_service(self, project, path, res):
        """Balancing modes (cloud.google.com/load-balancing/docs/backend-service,
        "Supported balancing modes" and "Restrictions and guidance for instance
        groups"): an INTERNAL backend service balances by CONNECTION ("Balancing mode
        must be CONNECTION for an INTERNAL backend service", Google's 400); RATE needs
        exactly one of maxRate, maxRatePerInstance, maxRatePerEndpoint; and an instance
        group serving several backend services needs compatible modes there: the same
        one, or CONNECTION with RATE (UTILIZATION pairs with neither: "with
        utilization mode we can not use ILB and HTTP LB on the same IG",
        github.com/kubernetes/ingress-nginx/issues/112)."""
        scheme = res.get("loadBalancingScheme", "EXTERNAL")
        mine = {}
        for i, b in enumerate(res.get("backends") or []):
            mode = b.get("balancingMode", "UTILIZATION")
            field = "resource.backends[%d].balancingMode" % i
            if scheme == "INTERNAL" and mode != "CONNECTION":
                raise ApiError(400, "invalid", "Invalid value for field '%s': '%s'. Balancing "
                               "mode must be CONNECTION for an INTERNAL backend service."
                               % (field, mode))
            if mode == "RATE" and sum(k in b for k in ("maxRate", "maxRatePerInstance",
                                                       "maxRatePerEndpoint")) != 1:
                raise ApiError(400, "invalid", "Invalid value for field '%s': RATE needs "
                               "exactly one of maxRate, maxRatePerInstance, "
                               "maxRatePerEndpoint." % field)
            mine[b.get("group")] = (mode, field)
        for other, r in self.cloud.resources.items():
            if other == path or not other.startswith("projects/%s/" % project) \
                    or "/backendServices/" not in other:
                continue
            for b in r.get("backends") or []:
                if b.get("group") not in mine:
                    continue
                have = b.get("balancingMode", "UTILIZATION")
                mode, field = mine[b["group"]]
                if have != mode and {have, mode} != {"CONNECTION", "RATE"}:
                    raise ApiError(400, "invalid", "Invalid value for field '%s': '%s'. "
                                   "Instance group '%s' is a backend of '%s' with balancing "
                                   "mode %s, which is incompatible." % (
                                       field, mode, b["group"], other, have))

    def delete(self, base, project, scope, path, query):
        c = self.cloud
        res = c.resources.get(path)
        if res is None:
            raise not_found(path)
        users = c.users_of(path)
        if users:
            raise ApiError(400, "resourceInUseByAnotherResource",
                           "The %s resource '%s' is already being used by '%s'"
                           % (base[:-3] + "y" if base.endswith("ies") else base[:-1],
                              path, users[0]))
        if base == "instances":
            if res.get("status") == "STOPPING":
                # Google answers a second delete with another operation.
                return c.operation(project, scope, base, path, "delete", query.get("requestId"))
            res["status"] = "STOPPING"
            for members in c.members.values():
                members.discard(path)

            def on_done(path=path):
                c.resources.pop(path, None)
            return c.operation(project, scope, base, path, "delete", query.get("requestId"),
                               on_done)
        del c.resources[path]
        c.members.pop(path, None)
        return c.operation(project, scope, base, path, "delete", query.get("requestId"))

    def list(self, collection, prefix, query):
        c = self.cloud
        wanted = parse_filter(query.get("filter", ""))
        items = []
        for path, res in sorted(c.resources.items()):
            if path.rsplit("/", 1)[0] != prefix:
                continue
            labels = res.get("labels", {})
            if all(labels.get(k) == v for k, v in wanted):
                items.append(res)
        kind = {"instances": "instanceList", "firewalls": "firewallList",
                "addresses": "addressList", "globalAddresses": "addressList",
                "forwardingRules": "forwardingRuleList",
                "globalForwardingRules": "forwardingRuleList",
                "instanceGroups": "instanceGroupList"}.get(collection, collection + "List")
        max_results = int(query.get("maxResults", "500"))
        start = int(query.get("pageToken", "0") or "0")
        page = items[start:start + max_results]
        out = {"kind": "compute#" + kind, "id": prefix, "items": page,
               "selfLink": COMPUTE + prefix}
        if start + max_results < len(items):
            out["nextPageToken"] = str(start + max_results)
        return out

    def aggregated(self, collection, project, query):
        """`aggregatedList` of a zonal collection: `{"zones/<z>": {collection: [...]}}`
        for every zone with a match, filtered by labels like `list`."""
        wanted = parse_filter(query.get("filter", ""))
        items = {}
        pattern = re.compile(r"^projects/%s/(zones/[^/]+)/%s/[^/]+$"
                             % (re.escape(project), re.escape(collection)))
        for path, res in sorted(self.cloud.resources.items()):
            m = pattern.match(path)
            labels = res.get("labels", {})
            if m and all(labels.get(k) == v for k, v in wanted):
                items.setdefault(m.group(1), {collection: []})[collection].append(res)
        kind = {"instances": "instanceAggregatedList"}.get(collection,
                                                            collection + "AggregatedList")
        return {"kind": "compute#" + kind, "id": "projects/" + project, "items": items,
                "selfLink": COMPUTE + "projects/%s/aggregated/%s" % (project, collection)}

    def group_members(self, verb, project, scope, path, body, query):
        c = self.cloud
        if path not in c.resources:
            raise not_found(path)
        members = c.members.setdefault(path, set())
        if verb == "listInstances":
            return {"kind": "compute#instanceGroupsListInstances", "id": path,
                    "items": [{"instance": COMPUTE + m, "status": c.resources[m].get("status",
                                                                                      "RUNNING")}
                              for m in sorted(members) if m in c.resources],
                    "selfLink": COMPUTE + path + "/listInstances"}
        refs = [i.get("instance", "") for i in body.get("instances", [])]
        paths = []
        for ref in refs:
            p = link_path(ref, project)
            if p not in c.resources:
                raise not_found(p)
            if p.split("/")[3] != path.split("/")[3]:
                raise ApiError(400, "invalid", "Instance '%s' is not in the zone of the instance "
                               "group '%s'" % (p, path))
            if verb == "addInstances" and p in members:
                raise ApiError(400, "memberAlreadyExists", "The instance '%s' is already a member "
                               "of '%s'" % (p, path))
            if verb == "removeInstances" and p not in members:
                raise ApiError(400, "memberNotFound", "The instance '%s' is not a member of '%s'"
                               % (p, path))
            paths.append(p)
        for p in paths:
            (members.add if verb == "addInstances" else members.discard)(p)
        c.resources[path]["size"] = len(members)
        return c.operation(project, scope, "instanceGroups", path, verb, query.get("requestId"))

    # ---------------------------------------------------------------- DNS ---
    def dns(self, mid, params, query, body, project):
        c = self.cloud
        verb = mid.split(".")[-1]
        if mid == "dns.managedZones.list":
            zones = [z for (p, _), z in sorted(c.zones.items()) if p == project
                     and ("dnsName" not in query or z["dnsName"] == query["dnsName"])]
            return {"kind": "dns#managedZonesListResponse", "managedZones": zones}
        key = (project, params.get("managedZone"))
        zone = c.zones.get(key)
        if zone is None:
            raise ApiError(404, "notFound", "The 'parameters.managedZone' resource named '%s' does "
                           "not exist." % params.get("managedZone"))
        if mid == "dns.managedZones.get":
            return zone
        if mid == "dns.resourceRecordSets.list":
            rrsets = [r for r in zone["_rrsets"]
                      if ("name" not in query or r["name"] == query["name"])
                      and ("type" not in query or r["type"] == query["type"])]
            return {"kind": "dns#resourceRecordSetsListResponse", "rrsets": rrsets}
        if mid == "dns.changes.get":
            change = c.changes.get(key + (params["changeId"],))
            if change is None:
                raise ApiError(404, "notFound", "The 'parameters.changeId' resource named '%s' "
                               "does not exist." % params["changeId"])
            if change["status"] == "pending":
                change["_polls"] = change.get("_polls", 0) + 1
                if change["_polls"] > CHANGE_POLLS:
                    change["status"] = "done"
            return {k: v for k, v in change.items() if not k.startswith("_")}
        if mid == "dns.changes.create":
            return self.dns_change(project, key, zone, body)
        raise ApiError(501, "notImplemented", "the fake does not serve %s" % mid)

    def dns_change(self, project, key, zone, body):
        c = self.cloud
        rrsets = list(zone["_rrsets"])
        deletions = body.get("deletions", [])
        additions = body.get("additions", [])
        if not deletions and not additions:
            raise ApiError(400, "required", "The 'entity.change' parameter is required but was "
                           "missing.")
        for d in deletions:
            match = [r for r in rrsets if r["name"] == d.get("name") and r["type"] == d.get("type")]
            if not match:
                raise ApiError(404, "notFound", "The 'entity.change.deletions[%s]' resource named "
                               "'%s' does not exist." % (d.get("name"), d.get("type")))
            if match[0].get("rrdatas") != d.get("rrdatas") or match[0].get("ttl") != d.get("ttl"):
                raise ApiError(412, "conditionNotMet", "Precondition not met for "
                               "'entity.change.deletions[%s]'" % d.get("name"))
            rrsets.remove(match[0])
        for a in additions:
            name, kind = a.get("name", ""), a.get("type", "")
            if not name.endswith(zone["dnsName"]):
                raise ApiError(400, "invalid", "Invalid value for 'entity.change.additions[%s]"
                               ".name'" % name)
            if any(r["name"] == name and r["type"] == kind for r in rrsets):
                raise ApiError(409, "alreadyExists", "The resource 'entity.change.additions[%s]' "
                               "named '%s (%s)' already exists" % (name, name, kind))
            if kind == "CNAME" and any(r["name"] == name for r in rrsets) or \
                    any(r["name"] == name and r["type"] == "CNAME" for r in rrsets):
                raise ApiError(400, "cnameResourceRecordSetConflict", "The resource record set "
                               "'entity.change.additions[%s]' is invalid because a CNAME resource "
                               "record set cannot be combined with other types." % name)
            rec = dict(a)
            rec["kind"] = "dns#resourceRecordSet"
            rrsets.append(rec)
        zone["_rrsets"] = rrsets
        zone["_next_change"] += 1
        change = {"kind": "dns#change", "id": str(zone["_next_change"]), "status": "pending",
                  "startTime": now_rfc3339(), "additions": additions, "deletions": deletions}
        c.changes[key + (change["id"],)] = change
        return {k: v for k, v in change.items() if not k.startswith("_")}

    def seed(self, body, validators):
        c = self.cloud
        project = body["project"]
        c.ensure_project(project)
        for z in body.get("managedZones", []):
            problems = validators["dns"].validate_ref("ManagedZone", z)
            if problems:
                raise ApiError(400, "invalid", "; ".join(problems))
            zone = dict(z, kind="dns#managedZone", id=new_id(), creationTime=now_rfc3339(),
                        nameServers=["ns-cloud-a1.googledomains.com."])
            zone["_rrsets"] = [
                {"kind": "dns#resourceRecordSet", "name": z["dnsName"], "type": "SOA", "ttl": 21600,
                 "rrdatas": ["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. "
                             "1 21600 3600 259200 300"]},
                {"kind": "dns#resourceRecordSet", "name": z["dnsName"], "type": "NS", "ttl": 21600,
                 "rrdatas": ["ns-cloud-a1.googledomains.com."]}]
            zone["_rrsets"] += z.get("_records", [])
            zone.pop("_records", None) if "_records" in zone else None
            zone["_next_change"] = 0
            c.zones[(project, z["name"])] = zone
        for r in body.get("records", []):
            zone = c.zones[(project, r["zone"])]
            zone["_rrsets"].append({"kind": "dns#resourceRecordSet", "name": r["name"],
                                    "type": r["type"], "ttl": r.get("ttl", 300),
                                    "rrdatas": r["rrdatas"]})
        for cert in body.get("sslCertificates", []):
            path = "projects/%s/global/sslCertificates/%s" % (project, cert["name"])
            c.resources[path] = {"kind": "compute#sslCertificate", "id": new_id(),
                                 "name": cert["name"], "type": "SELF_MANAGED",
                                 "creationTimestamp": now_rfc3339(), "selfLink": COMPUTE + path}


def parse_filter(text):
    """`labels.a=b`, `labels.a = "b" AND (labels.c = "d")` -> [(a, b), (c, d)]."""
    out = []
    text = text.strip()
    if not text:
        return out
    for part in re.split(r"\s+AND\s+", text):
        part = part.strip().strip("()").strip()
        m = re.match(r'^labels\.([a-z0-9_-]+)\s*(?:=|eq)\s*"?([^"]*)"?$', part)
        if not m:
            raise ApiError(400, "invalid", "Invalid value for field 'filter': '%s'. The fake "
                           "understands only labels.KEY=VALUE terms joined by AND." % text)
        out.append((m.group(1), m.group(2)))
    return out


# ------------------------------------------------------------------- HTTP ---

def public(value):
    """A response without the fake's private keys (leading underscore)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def make_handler(cloud, api, routes, validators):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if getattr(self.server, "verbose", False):
                log(fmt % args)

        def send_json(self, code, value):
            data = json.dumps(value).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiError(400, "parseError", "Invalid JSON payload received.")

        def dispatch(self, verb):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            try:
                if url.path == "/_fake/token" and verb == "POST":
                    # An OAuth 2.0 token endpoint (a form-encoded refresh or JWT
                    # grant in, a bearer token out), for `token_uri` in test ADC files.
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    cloud.token_requests += 1
                    return self.send_json(200, {"access_token": "fake-access-token",
                                                "expires_in": 3600, "token_type": "Bearer"})
                body = self.read_body()
                if url.path.startswith("/_fake/"):
                    return self.control(verb, url.path, query, body)
                for route in routes:
                    if route.verb != verb:
                        continue
                    m = route.regex.match(url.path)
                    if m:
                        break
                else:
                    raise ApiError(404, "notFound", "No such method: %s %s" % (verb, url.path))
                params = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                for key in query:
                    if key == "$alt":
                        # Google's system-parameter alias of `alt`, which the Rust
                        # SDK sends as `json;enum-encoding=int`.
                        if query[key].split(";")[0] != "json":
                            raise ApiError(400, "invalid", "Invalid value for $alt: %r"
                                           % query[key])
                        continue
                    if key == "$apiVersion":
                        # A dated API version no newer than the method's `apiVersion`
                        # in the discovery document (older clients pin older dates).
                        if not re.match(r"^\d{4}-\d{2}-\d{2}$", query[key]) or (
                                route.api_version and query[key] > route.api_version):
                            raise ApiError(400, "invalid", "Unsupported $apiVersion %r for %s "
                                           "(the discovery document says %r)"
                                           % (query[key], route.id, route.api_version))
                        continue
                    spec = route.params.get(key)
                    if spec is None or spec.get("location") != "query":
                        raise ApiError(400, "invalid", "Invalid JSON payload received. Unknown "
                                       "name \"%s\": Cannot bind query parameter." % key)
                if route.request:
                    if body is None:
                        raise ApiError(400, "required", "Required field 'resource' not "
                                       "specified")
                    problems = route.validator.validate_ref(route.request, body, "resource")
                    if problems:
                        raise ApiError(400, "invalid", "Invalid JSON payload received. "
                                       + "; ".join(problems))
                with cloud.lock:
                    failure = cloud.take_failure(route.id, params.get("project"))
                    if failure:
                        raise ApiError(failure.get("code", 429),
                                       failure.get("reason", "rateLimitExceeded"),
                                       failure.get("message", "Rate Limit Exceeded"))
                    result = public(api.handle(route, params, query, body or {}))
                    result = json.loads(json.dumps(result))
                problems = validators[route.api].validate_ref(route.response, result) \
                    if route.response else []
                if problems:
                    cloud.violations.append({"method": route.id, "problems": problems})
                    log("!!! RESPONSE SCHEMA VIOLATION (a bug in the fake) in %s: %s"
                        % (route.id, problems))
                    raise ApiError(500, "backendError", "the fake produced an invalid %s: %s"
                                   % (route.response, problems))
                self.send_json(200, result)
            except ApiError as e:
                self.send_json(e.code, e.body())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away
            except Exception as e:  # a bug in the fake
                log("!!! internal error:", traceback.format_exc())
                self.send_json(500, ApiError(500, "backendError", "fake bug: %r" % e).body())

        def control(self, verb, path, query, body):
            if path == "/_fake/health":
                return self.send_json(200, {"ok": True})
            with cloud.lock:
                if path == "/_fake/reset" and verb == "POST":
                    cloud.reset()
                    return self.send_json(200, {"ok": True})
                if path == "/_fake/seed" and verb == "POST":
                    api.seed(body or {}, validators)
                    return self.send_json(200, {"ok": True})
                if path == "/_fake/fail-next" and verb == "POST":
                    f = dict(body or {})
                    f.setdefault("method", "*")
                    f.setdefault("count", 1)
                    cloud.failures.append(f)
                    return self.send_json(200, {"ok": True})
                if path == "/_fake/tokens":
                    return self.send_json(200, {"tokens": cloud.token_requests})
                if path == "/_fake/violations":
                    return self.send_json(200, {"violations": cloud.violations})
                if path == "/_fake/calls":
                    return self.send_json(200, {"calls": cloud.calls.get(query.get("project"),
                                                                         [])})
                if path == "/_fake/state":
                    project = query.get("project", "")
                    pre = "projects/%s/" % project
                    return self.send_json(200, {
                        "resources": {k: v for k, v in cloud.resources.items()
                                      if k.startswith(pre)},
                        "members": {k: sorted(v) for k, v in cloud.members.items()
                                    if k.startswith(pre)},
                        "zones": {z: public(v) | {"rrsets": v["_rrsets"]}
                                  for (p, z), v in cloud.zones.items() if p == project}})
            raise ApiError(404, "notFound", "no control endpoint %s" % path)

        def do_GET(self):
            self.dispatch("GET")

        def do_POST(self):
            self.dispatch("POST")

        def do_DELETE(self):
            self.dispatch("DELETE")

        def do_PATCH(self):
            self.dispatch("PATCH")

        def do_PUT(self):
            self.dispatch("PUT")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--discovery", required=True, help="folder with compute.v1.json, dns.v1.json")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    routes, validators = load_routes(args.discovery)
    cloud = Cloud()
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(cloud, Api(cloud), routes, validators))
    server.daemon_threads = True

    def handle_error(request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            ThreadingHTTPServer.handle_error(server, request, client_address)
    server.handle_error = handle_error
    server.verbose = args.verbose
    port = server.server_address[1]
    log("serving %d methods on http://%s:%d" % (len(routes), args.host, port))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
