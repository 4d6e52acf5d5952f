//! The `[ec2]` section of the spec, and the checks that need no API call.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use triad_core::error::{Error, SpecProblem, SpecProblems};
use triad_core::spec::{LbMode, ValidSpec};

/// The instance type used when the spec gives no `nodes.size`: 4 vCPUs and 16 GiB,
/// Rancher's size for a small-to-medium management cluster.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.xlarge";
/// The TLS policy of the layer 7 HTTPS listener when `ssl_policy` is not given.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/// The IMDSv2 hop limit when `imds_hop_limit` is not given: the node itself only.
pub const DEFAULT_IMDS_HOP_LIMIT: u8 = 1;
/// How many times the AWS SDK tries one call (the first try included) by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// `[ec2]`: where in AWS the cluster goes. Every field is optional.
///
/// ```toml
/// [ec2]
/// subnets = ["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"]  # one per zone
/// ingress_cidrs = ["0.0.0.0/0"]
/// hosted_zone_id = "Z0123456789ABC"
/// instance_profile = "rancher-node"
/// key_name = "ops"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Settings {
    /// The nodes' subnets, at most one per availability zone. Empty: one subnet per
    /// zone is discovered in `vpc` (or in the region's default VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// The VPC to discover subnets in when `subnets` is empty. Absent: the region's
    /// default VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// The balancer's subnets (e.g. public subnets for an internet-facing balancer
    /// in front of nodes in private subnets), one per node zone. Empty: the nodes'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lb_subnets: Vec<String>,
    /// Who may reach Rancher on 80/443: for layer 4 the nodes' security group lets
    /// these in (an NLB keeps the client's address), for layer 7 the balancer's.
    /// Absent: `0.0.0.0/0` for an internet-facing balancer, the VPC's CIDRs for an
    /// internal one. The VPC's CIDRs are always allowed on 80 for health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_cidrs: Option<Vec<String>>,
    /// The Route 53 hosted zone of `dns.zone`. Absent: the one zone of that name
    /// (an error when a public and a private zone share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    /// IAM instance profile (name or ARN) for the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// EC2 key pair name for the nodes (SSH keys also go in through
    /// `nodes.ssh_authorized_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// TLS policy of the layer 7 HTTPS listener; [`DEFAULT_SSL_POLICY`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    /// Tries per AWS call, the first included (the SDK's standard retry mode with
    /// exponential backoff for throttling and transient faults); 1 turns the SDK's
    /// retry off. [`DEFAULT_MAX_ATTEMPTS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Accept node subnets that give instances a public IP on launch or route
    /// `0.0.0.0/0` to an internet gateway, where nodes could reach the internet
    /// around the proxy. Off by default: plan refuses such subnets (naming
    /// `ec2.subnets[i]`). Nodes never get a public IP either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_direct_egress: bool,
    /// The instance metadata service's PUT response hop limit (IMDSv2):
    /// [`DEFAULT_IMDS_HOP_LIMIT`] (1) when absent, so pods (one hop further) cannot
    /// read the node's metadata and user data. Raise it to 2 only when something in a
    /// pod needs IMDS (the AWS cloud controller or an add-on without IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds_hop_limit: Option<u8>,
}

impl Ec2Settings {
    /// The TLS policy of the HTTPS listener.
    pub fn ssl_policy(&self) -> &str {
        self.ssl_policy.as_deref().unwrap_or(DEFAULT_SSL_POLICY)
    }

    /// Tries per AWS call.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// The IMDSv2 PUT response hop limit of the nodes.
    pub fn imds_hop_limit(&self) -> u8 {
        self.imds_hop_limit.unwrap_or(DEFAULT_IMDS_HOP_LIMIT)
    }

    /// Every problem in these settings, each naming its field (`ec2.subnets[1]`).
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut problem = |field: String, problem: String, fix: &str| {
            out.push(SpecProblem {
                field,
                problem,
                fix: fix.to_owned(),
            })
        };
        for (list, name) in [(&self.subnets, "subnets"), (&self.lb_subnets, "lb_subnets")] {
            for (i, id) in list.iter().enumerate() {
                if !is_id(id, "subnet-") {
                    problem(
                        format!("ec2.{name}[{i}]"),
                        format!("`{id}` is not a subnet id"),
                        "use ids like subnet-0123456789abcdef0",
                    );
                } else if list[..i].contains(id) {
                    problem(
                        format!("ec2.{name}[{i}]"),
                        format!("`{id}` is listed twice"),
                        "list each subnet once",
                    );
                }
            }
        }
        if let Some(vpc) = &self.vpc {
            if !is_id(vpc, "vpc-") {
                problem(
                    "ec2.vpc".into(),
                    format!("`{vpc}` is not a VPC id"),
                    "use an id like vpc-0123456789abcdef0",
                );
            } else if !self.subnets.is_empty() {
                problem(
                    "ec2.vpc".into(),
                    "is given together with ec2.subnets".into(),
                    "give either ec2.subnets (the VPC follows from them) or ec2.vpc",
                );
            }
        }
        if let Some(cidrs) = &self.ingress_cidrs {
            for (i, c) in cidrs.iter().enumerate() {
                if let Err(why) = check_cidr(c) {
                    problem(
                        format!("ec2.ingress_cidrs[{i}]"),
                        format!("`{c}` {why}"),
                        "use IPv4 CIDRs like 203.0.113.0/24 or 0.0.0.0/0",
                    );
                }
            }
        }
        if let Some(z) = &self.hosted_zone_id {
            let id = z.trim_start_matches("/hostedzone/");
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                problem(
                    "ec2.hosted_zone_id".into(),
                    format!("`{z}` is not a Route 53 hosted zone id"),
                    "use the zone's id, like Z0123456789ABCDEFGHIJ",
                );
            }
        }
        if let Some(p) = &self.instance_profile {
            if p.trim().is_empty() {
                problem(
                    "ec2.instance_profile".into(),
                    "is empty".into(),
                    "give an instance profile name or ARN, or leave the field out",
                );
            }
        }
        if let Some(k) = &self.key_name {
            if k.trim().is_empty() {
                problem(
                    "ec2.key_name".into(),
                    "is empty".into(),
                    "give a key pair name, or leave the field out",
                );
            }
        }
        if let Some(p) = &self.ssl_policy {
            if !p.starts_with("ELBSecurityPolicy-") {
                problem(
                    "ec2.ssl_policy".into(),
                    format!("`{p}` is not an ELB security policy"),
                    "use a policy like ELBSecurityPolicy-TLS13-1-2-2021-06",
                );
            }
        }
        if let Some(n) = self.imds_hop_limit {
            if !(1..=64).contains(&n) {
                problem(
                    "ec2.imds_hop_limit".into(),
                    format!("is {n}"),
                    "use 1 (the node only, the default) to 64; 2 lets pods reach IMDS",
                );
            }
        }
        if let Some(n) = self.max_attempts {
            if !(1..=10).contains(&n) {
                problem(
                    "ec2.max_attempts".into(),
                    format!("is {n}"),
                    "use 1 (no SDK retry) to 10",
                );
            }
        }
        out
    }
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Why `c` is not an IPv4 CIDR.
pub(crate) fn check_cidr(c: &str) -> Result<(), &'static str> {
    let (addr, len) = c.split_once('/').ok_or("has no /prefix length")?;
    let addr: IpAddr = addr.parse().map_err(|_| "is not an address/length")?;
    let len: u8 = len.parse().map_err(|_| "has a bad prefix length")?;
    match addr {
        IpAddr::V4(_) if len <= 32 => Ok(()),
        IpAddr::V4(_) => Err("has a prefix length above 32"),
        IpAddr::V6(_) => Err("is IPv6, which triad's EC2 security groups do not handle yet"),
    }
}

/// Which of the three provider traits a check belongs to: each trait's `check_spec`
/// reports only its own problems, so an [`Ec2`](crate::Ec2) that plays one part
/// (EC2 nodes behind an NGINX balancer, say) never refuses a field another provider
/// gives a meaning to, and one that plays all three reports each problem once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Concern {
    /// Instances, subnets, security groups (and the SDK's own settings).
    Nodes,
    /// The balancer, its subnets, ingress and TLS.
    LoadBalancer,
    /// Route 53.
    Dns,
}

impl Concern {
    /// The concern of a spec field (`ec2.lb_subnets[0]`, `load_balancer.ssl_policy`).
    pub(crate) fn of(field: &str) -> Self {
        let key = field.split(['[', '.']).nth(1).unwrap_or("");
        match (field.split('.').next(), key) {
            (Some("ec2"), "lb_subnets" | "ingress_cidrs" | "ssl_policy") => Self::LoadBalancer,
            (Some("ec2"), "hosted_zone_id") => Self::Dns,
            (Some("load_balancer"), _) => Self::LoadBalancer,
            (Some("dns"), _) => Self::Dns,
            _ => Self::Nodes,
        }
    }
}

impl Ec2Settings {
    /// The spec's `[ec2]` section, parsed and checked once: every problem of the
    /// section at once, each naming its field. `load_balancer.ssl_policy` is taken
    /// in when `ec2.ssl_policy` is not given (giving both, differently, is a problem).
    pub fn from_spec(spec: &ValidSpec) -> Result<Self, Error> {
        let mut settings: Self = match &spec.ec2 {
            Some(section) => section.parse("ec2")?,
            None => Self::default(),
        };
        let mut problems = settings.problems();
        match (&settings.ssl_policy, &spec.load_balancer.ssl_policy) {
            (Some(ec2), Some(lb)) if ec2 != lb => problems.push(SpecProblem {
                field: "load_balancer.ssl_policy".into(),
                problem: "differs from ec2.ssl_policy".into(),
                fix: "give the policy once (load_balancer.ssl_policy)".into(),
            }),
            (None, Some(lb)) => settings.ssl_policy = Some(lb.clone()),
            _ => {}
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }
}

/// Every problem EC2 finds in `spec` without an API call, for the parts it plays
/// (`nodes`, `load_balancer`; DNS has no offline checks beyond the section): what
/// `triad validate` reports before it connects anywhere.
pub fn offline_problems(spec: &ValidSpec, nodes: bool, load_balancer: bool) -> Vec<SpecProblem> {
    let (settings, mut out) = match Ec2Settings::from_spec(spec) {
        Ok(s) => (s, Vec::new()),
        Err(Error::InvalidSpec(SpecProblems(problems))) => (Ec2Settings::default(), problems),
        Err(e) => {
            return vec![SpecProblem {
                field: "ec2".into(),
                problem: e.to_string(),
                fix: "fix the [ec2] section (see docs/ec2.md)".into(),
            }]
        }
    };
    if nodes {
        out.extend(node_problems(spec));
    }
    if load_balancer {
        out.extend(lb_problems(spec, &settings));
    }
    out
}

/// The problems of the node fields EC2 gives a meaning to: `nodes.image` must be an
/// AMI id, `nodes.size` an instance type. No API call.
pub(crate) fn node_problems(spec: &ValidSpec) -> Vec<SpecProblem> {
    let mut out = Vec::new();
    match &spec.nodes.image {
        None => out.push(SpecProblem {
            field: "nodes.image".into(),
            problem: "is missing; EC2 needs an AMI id".into(),
            fix: "set nodes.image to an AMI of the region, e.g. from \
                  `aws ec2 describe-images` or the SSM parameter of your distribution"
                .into(),
        }),
        Some(image) if !is_id(image, "ami-") => out.push(SpecProblem {
            field: "nodes.image".into(),
            problem: format!("`{image}` is not an AMI id"),
            fix: "use an id like ami-0123456789abcdef0".into(),
        }),
        Some(_) => {}
    }
    if let Some(size) = &spec.nodes.size {
        let ok = size.split_once('.').is_some_and(|(family, sz)| {
            !family.is_empty()
                && !sz.is_empty()
                && family
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && sz.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !ok {
            out.push(SpecProblem {
                field: "nodes.size".into(),
                problem: format!("`{size}` is not an EC2 instance type"),
                fix: format!("use an instance type like {DEFAULT_INSTANCE_TYPE}"),
            });
        }
    }
    out
}

/// The problems of the balancer fields EC2 gives a meaning to, for a provider with
/// `settings`: the TLS policy and the certificate of an l7 balancer. (An l7
/// balancer with `registration = "balancer"` is fine: an internal companion NLB
/// carries the registration ports.) No API call.
pub(crate) fn lb_problems(spec: &ValidSpec, settings: &Ec2Settings) -> Vec<SpecProblem> {
    let mut out = Vec::new();
    if let Some(policy) = &spec.load_balancer.ssl_policy {
        if !policy.starts_with("ELBSecurityPolicy-") {
            out.push(SpecProblem {
                field: "load_balancer.ssl_policy".into(),
                problem: format!("`{policy}` is not an ELB security policy"),
                fix: format!("use a policy like {DEFAULT_SSL_POLICY}, or leave it out"),
            });
        } else if settings.ssl_policy.as_ref() != Some(policy) {
            out.push(SpecProblem {
                field: "load_balancer.ssl_policy".into(),
                problem: format!(
                    "is `{policy}`, but this EC2 provider was built with `{}`",
                    settings.ssl_policy()
                ),
                fix: "build the provider from this spec (Ec2::from_spec), or give the \
                      policy in its settings"
                    .into(),
            });
        }
    }
    if spec.load_balancer.mode == LbMode::L7 {
        if let Some(cert) = &spec.load_balancer.certificate {
            if let Err((problem, fix)) = check_certificate_arn(cert, &spec.region) {
                out.push(SpecProblem {
                    field: "load_balancer.certificate".into(),
                    problem,
                    fix,
                });
            }
        }
    }
    out
}

/// Whether `arn` names a certificate a balancer in `region` can use: an ACM
/// certificate of that region, or an IAM server certificate.
pub fn check_certificate_arn(arn: &str, region: &str) -> Result<(), (String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let fix_acm = format!("use an ACM certificate of {region}: arn:aws:acm:{region}:ACCOUNT:certificate/ID, or an IAM server certificate ARN");
    if parts.len() != 6 || parts[0] != "arn" || parts[1].is_empty() {
        return Err((format!("`{arn}` is not an ARN"), fix_acm));
    }
    match parts[2] {
        "acm" => {
            if parts[3] != region {
                return Err((
                    format!(
                        "`{arn}` is an ACM certificate of region `{}`; a balancer in `{region}` \
                         can only use certificates of its own region",
                        parts[3]
                    ),
                    fix_acm,
                ));
            }
            if !parts[5].starts_with("certificate/") || parts[4].is_empty() {
                return Err((format!("`{arn}` is not an ACM certificate ARN"), fix_acm));
            }
            Ok(())
        }
        "iam" if parts[5].starts_with("server-certificate/") => Ok(()),
        other => Err((
            format!("`{arn}` is an ARN of service `{other}`, not a certificate"),
            fix_acm,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_core::spec::ClusterSpec;

    fn spec(extra: &str) -> ValidSpec {
        ClusterSpec::from_toml(&format!(
            "name = \"r\"\nregion = \"us-east-1\"\n{extra}\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    const IMAGE: &str = "[nodes]\nimage = \"ami-0123abcd\"\n";

    /// Every problem the three traits together report for `s`.
    fn spec_problems(s: &ValidSpec) -> Vec<SpecProblem> {
        let (settings, mut out) = match Ec2Settings::from_spec(s) {
            Ok(settings) => (settings, Vec::new()),
            Err(e) => (
                Ec2Settings::default(),
                e.spec_problems().expect("spec problems").0.clone(),
            ),
        };
        out.extend(node_problems(s));
        out.extend(lb_problems(s, &settings));
        out
    }

    #[test]
    fn defaults_are_fine() {
        assert_eq!(spec_problems(&spec(IMAGE)), vec![]);
        let s = Ec2Settings::default();
        assert_eq!(s.ssl_policy(), DEFAULT_SSL_POLICY);
        assert_eq!(s.max_attempts(), DEFAULT_MAX_ATTEMPTS);
    }

    #[test]
    fn every_bad_field_is_named() {
        let s = spec(&format!(
            "{IMAGE}[ec2]\nsubnets = [\"subnet-0a\", \"subnet-zz\", \"subnet-0a\"]\nvpc = \"vpc-01\"\n\
             lb_subnets = [\"sn-1\"]\ningress_cidrs = [\"10.0.0.0/8\", \"10.0.0.0\", \"::/0\"]\n\
             hosted_zone_id = \"/hostedzone/\"\nssl_policy = \"TLS13\"\nmax_attempts = 0\nkey_name = \"\"\n"
        ));
        let fields: Vec<String> = spec_problems(&s).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "ec2.subnets[1]",
                "ec2.subnets[2]",
                "ec2.lb_subnets[0]",
                "ec2.vpc",
                "ec2.ingress_cidrs[1]",
                "ec2.ingress_cidrs[2]",
                "ec2.hosted_zone_id",
                "ec2.key_name",
                "ec2.ssl_policy",
                "ec2.max_attempts",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let s = spec(&format!("{IMAGE}[ec2]\nsubnet = [\"subnet-0a\"]\n"));
        let p = spec_problems(&s);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "ec2");
        assert!(p[0].problem.contains("unknown field `subnet`"), "{p:?}");
    }

    #[test]
    fn image_and_size_are_checked() {
        let fields = |s: &ValidSpec| -> Vec<String> {
            spec_problems(s).into_iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(&spec("")), ["nodes.image"]);
        assert_eq!(
            fields(&spec("[nodes]\nimage = \"ubuntu\"\nsize = \"xlarge\"\n")),
            ["nodes.image", "nodes.size"]
        );
    }

    #[test]
    fn certificates_must_be_of_the_region() {
        assert!(check_certificate_arn(
            "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "us-east-1"
        )
        .is_ok());
        assert!(check_certificate_arn(
            "arn:aws:iam::123456789012:server-certificate/rancher",
            "eu-west-1"
        )
        .is_ok());
        let (problem, _) = check_certificate_arn(
            "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
            "us-east-1",
        )
        .unwrap_err();
        assert!(problem.contains("region `eu-west-1`"), "{problem}");
        assert!(check_certificate_arn("arn:aws:s3:::bucket/x", "us-east-1").is_err());
        assert!(check_certificate_arn("my-cert", "us-east-1").is_err());
        let s = spec(&format!(
            "{IMAGE}[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:eu-west-1:1:certificate/x\"\n"
        ));
        assert_eq!(spec_problems(&s)[0].field, "load_balancer.certificate");
    }

    #[test]
    fn l7_with_registration_through_the_balancer_is_fine() {
        // RKE2 (the default) registers through the balancer (the default): in l7 the
        // ALB's internal companion NLB carries 9345 and 6443.
        let s = spec(&format!(
            "{IMAGE}[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:1:certificate/x\"\n"
        ));
        assert_eq!(s.registration_ports(), [9345, 6443]);
        assert_eq!(spec_problems(&s), vec![]);
    }
}
