"""Helpers for scripts/test's ec2 example step against moto.

    moto.py prepare ZONE            print an Ubuntu AMI id moto lists; create hosted zone ZONE
    moto.py check-inventory FILE    check the example's JSON inventory (EC2 specifics)
    moto.py check-destroy FILE      check the example's JSON destroy report
    moto.py tagged CLUSTER          print what still carries triad-cluster=CLUSTER
    moto.py network CIDR            make a VPC the way a real cluster has one: three
                                    private subnets (no public IP, no internet gateway
                                    route) for the nodes and three public ones for the
                                    balancer; print `subnets = [...]` and `lb_subnets = [...]`
    moto.py acm-cert DOMAIN         request an ACM certificate for DOMAIN; print its ARN

`prepare`, `network` and `tagged` run with moto's venv python (boto3) and the AWS_* variables
pointing at moto; the checks need only the standard library.
"""

import json
import os
import sys
import uuid


def client(service):
    import boto3

    # The endpoint comes from AWS_ENDPOINT_URL, as for the example.
    return boto3.client(service, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def prepare(zone):
    ec2 = client("ec2")
    images = [
        i
        for i in ec2.describe_images(Owners=["amazon"])["Images"]
        if i.get("Name", "").startswith("ubuntu/")
    ]
    if not images:
        sys.exit("moto lists no Ubuntu AMI")
    print(sorted(i["ImageId"] for i in images)[0])
    r53 = client("route53")
    names = [z["Name"] for z in r53.list_hosted_zones()["HostedZones"]]
    if zone + "." not in names:
        r53.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))


def check_inventory(path):
    inv = json.load(open(path))
    errors = []
    if inv.get("providers") != {"nodes": "ec2", "load_balancer": "ec2", "dns": "route53"}:
        errors.append(f"providers: {inv.get('providers')}")
    if len({n["zone"] for n in inv["nodes"]}) != 3:
        errors.append("the nodes are not in 3 zones")
    if not all(n["id"].startswith("i-") for n in inv["nodes"]):
        errors.append("node ids are not instance ids")
    ep = inv["load_balancer"]["endpoint"]
    if ep.get("kind") != "hostname" or not ep.get("alias_zone"):
        errors.append(f"balancer endpoint: {ep}")
    if inv["dns"]["kind"] != "alias":
        errors.append(f"dns kind: {inv['dns']['kind']}")
    if sorted(inv["load_balancer"]["targets"]) != sorted(n["id"] for n in inv["nodes"]):
        errors.append("the balancer's targets differ from the nodes")
    if errors:
        sys.exit("ec2 inventory is wrong: " + "; ".join(errors))
    print("ec2 JSON ok:", inv["rancher_url"])


def check_destroy(path):
    deleted = json.load(open(path)).get("deleted", [])
    # 3 nodes, the balancer, 2 target groups, the record, the security group.
    if len(deleted) < 8:
        sys.exit(f"ec2 destroy deleted too little: {deleted}")
    print(f"ec2 destroy ok: {len(deleted)} resources")


def tagged(cluster):
    ec2 = client("ec2")
    f = [{"Name": "tag:triad-cluster", "Values": [cluster]}]
    left = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=f)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    left += [g["GroupId"] for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]]
    elb = client("elbv2")
    arns = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    arns += [g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"]]
    for i in range(0, len(arns), 20):
        for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]:
            if any(t["Key"] == "triad-cluster" and t["Value"] == cluster for t in d["Tags"]):
                left.append(d["ResourceArn"])
    print(" ".join(left))


def network(cidr):
    """A VPC (CIDR like 10.60.0.0/16) with private node subnets and public balancer subnets."""
    ec2 = client("ec2")
    base = cidr.split("/")[0].split(".")
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    # Only the balancer's subnets get a route table with the internet gateway; the
    # nodes' subnets stay on the main table (the VPC's local route only).
    public_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    private, public = [], []
    for i, zone in enumerate(["us-east-1a", "us-east-1b", "us-east-1c"]):
        sub = lambda third: "%s.%s.%d.0/24" % (base[0], base[1], third)
        node = ec2.create_subnet(VpcId=vpc, CidrBlock=sub(i), AvailabilityZone=zone)["Subnet"]
        lb = ec2.create_subnet(VpcId=vpc, CidrBlock=sub(100 + i), AvailabilityZone=zone)["Subnet"]
        ec2.associate_route_table(RouteTableId=public_rt, SubnetId=lb["SubnetId"])
        private.append(node["SubnetId"])
        public.append(lb["SubnetId"])
    quoted = lambda ids: ", ".join('"%s"' % i for i in ids)
    print("subnets = [%s]" % quoted(private))
    print("lb_subnets = [%s]" % quoted(public))


def acm_cert(domain):
    """An ACM certificate moto issues at once, for listener tests."""
    arn = client("acm").request_certificate(DomainName=domain)["CertificateArn"]
    print(arn)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cmd, arg = sys.argv[1], sys.argv[2]
    {
        "prepare": prepare,
        "check-inventory": check_inventory,
        "check-destroy": check_destroy,
        "tagged": tagged,
        "network": network,
        "acm-cert": acm_cert,
    }[cmd](arg)
