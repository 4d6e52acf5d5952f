//! What moto cannot show — an instance still pending, a balancer provisioning, a
//! Route 53 change PENDING, throttling, 5xx, no capacity — by intercepting the SDK's
//! HTTP calls: a rule may answer a call itself, or forward it to moto and rewrite
//! the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use triad_core::error::{Error, FailureKind};
use triad_core::model::{LbState, NodeState, RecordKind, RecordRequest};
use triad_core::spec::ClusterRef;
use triad_core::{conformance::Fixture, Endpoint};
use triad_ec2::{DnsProvider, Ec2, LoadBalancerProvider, NodeProvider};

use crate::{hosted_zone, moto_url, sdk_config, ubuntu_ami, unique, REGION};

/// What to do with one call.
#[derive(Clone)]
pub(crate) enum Fault {
    /// Answer with this status and body; moto never sees the call.
    Respond(u16, String),
    /// Forward to moto and replace `from` by `to` in the answer.
    Rewrite(Vec<(String, String)>),
}

type Rule = dyn Fn(&str, u32) -> Option<Fault> + Send + Sync;

/// Counts every call by action (retries included) and applies the rule; keeps every
/// call's action and request body, in the order they were sent.
#[derive(Clone, Default)]
pub(crate) struct Calls(
    Arc<Mutex<HashMap<String, u32>>>,
    Arc<Mutex<Vec<(String, String)>>>,
);

impl Calls {
    /// Calls per action, retries included.
    pub(crate) fn snapshot(&self) -> std::collections::BTreeMap<String, u32> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    fn get(&self, action: &str) -> u32 {
        self.0.lock().unwrap().get(action).copied().unwrap_or(0)
    }

    /// Every call sent since the last [`Calls::clear`], in order: (action, request body).
    pub(crate) fn sequence(&self) -> Vec<(String, String)> {
        self.1.lock().unwrap().clone()
    }

    /// Forget the calls counted and recorded so far.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap().clear();
        self.1.lock().unwrap().clear();
    }

    /// The `ClientToken` of every `RunInstances` sent, in order.
    fn client_tokens(&self) -> Vec<String> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .filter(|(action, _)| action == "RunInstances")
            .filter_map(|(_, body)| {
                body.split('&')
                    .find_map(|kv| kv.strip_prefix("ClientToken="))
                    .map(str::to_owned)
            })
            .collect()
    }
}

fn action_of(req: &HttpRequest) -> String {
    let body = req
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    if let Some(rest) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return rest.to_owned();
    }
    let uri = req.uri();
    if uri.contains("/change/") {
        "GetChange".into()
    } else if uri.contains("/rrset") && req.method() == "POST" {
        "ChangeResourceRecordSets".into()
    } else if uri.contains("/rrset") {
        "ListResourceRecordSets".into()
    } else if uri.contains("/hostedzonesbyname") {
        "ListHostedZonesByName".into()
    } else if uri.contains("/hostedzone/") && req.method() == "GET" {
        "GetHostedZone".into()
    } else {
        uri.to_owned()
    }
}

fn intercepting(rule: Arc<Rule>, calls: Calls) -> SharedHttpClient {
    let inner = triad_ec2::client::http_client();
    http_client_fn(move |settings, components| {
        let forward = inner.http_connector(settings, components);
        let rule = rule.clone();
        let calls = calls.clone();
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(Interceptor {
            forward,
            rule,
            calls,
        })
    })
}

struct Interceptor {
    forward: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    rule: Arc<Rule>,
    calls: Calls,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interceptor")
    }
}

impl HttpConnector for Interceptor {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let action = action_of(&request);
        let body = request.body().bytes().map(String::from_utf8_lossy);
        self.calls
            .1
            .lock()
            .unwrap()
            .push((action.clone(), body.unwrap_or_default().into_owned()));
        let nth = {
            let mut m = self.calls.0.lock().unwrap();
            let n = m.entry(action.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        match (self.rule)(&action, nth) {
            Some(Fault::Respond(status, body)) => HttpConnectorFuture::ready(Ok(
                HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body)),
            )),
            Some(Fault::Rewrite(pairs)) => {
                let fut = self.forward.call(request);
                HttpConnectorFuture::new(async move {
                    let mut resp = fut.await?;
                    let body = ByteStream::new(resp.take_body())
                        .collect()
                        .await
                        .map(|b| b.into_bytes())
                        .unwrap_or_default();
                    let mut text = String::from_utf8_lossy(&body).into_owned();
                    for (from, to) in &pairs {
                        text = text.replace(from.as_str(), to);
                    }
                    resp.headers_mut().remove("content-length");
                    *resp.body_mut() = SdkBody::from(text);
                    Ok(resp)
                })
            }
            None => self.forward.call(request),
        }
    }
}

pub(crate) async fn scripted(
    rule: impl Fn(&str, u32) -> Option<Fault> + Send + Sync + 'static,
) -> (Ec2, Calls) {
    let calls = Calls::default();
    let http = intercepting(Arc::new(rule), calls.clone());
    let config = sdk_config(&moto_url(), Some(http), 3).await;
    let aws = Ec2::from_sdk_config(&config, REGION, crate::default_vpc())
        .with_poll_interval(Duration::from_millis(5), Duration::from_millis(20));
    (aws, calls)
}

fn ec2_error(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
         <Message>scripted {code}</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    )
}

async fn fixture(aws: &Ec2, prefix: &str) -> Fixture {
    let name = unique(prefix);
    let zone = format!("{name}.test");
    hosted_zone(aws.route53_client(), &zone).await;
    let mut fx = Fixture::new(
        ClusterRef::new(&name, REGION),
        &zone,
        format!("rancher.{zone}"),
    );
    fx.node.image = Some(ubuntu_ami(aws.ec2_client()).await);
    fx.node.size = Some("t3.micro".into());
    fx
}

/// Strip the private IP and say `pending` in the first 3 answers to the wait's
/// DescribeInstances: wait_node keeps polling, then returns the running node.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_pending_instance_is_waited_for() {
    let (aws, calls) = scripted(|action, nth| {
        (action == "DescribeInstances" && nth < 4).then(|| {
            Fault::Rewrite(vec![
                ("<name>running</name>".into(), "<name>pending</name>".into()),
                ("<privateIpAddress>".into(), "<ignoredIpAddress>".into()),
                ("</privateIpAddress>".into(), "</ignoredIpAddress>".into()),
            ])
        })
    })
    .await;
    let fx = fixture(&aws, "pend").await;
    let zones = aws.zones(&fx.cluster).await.unwrap();
    let node = aws
        .create_node(&fx.cluster, &fx.node_request(&fx.node_name(1), &zones[0]))
        .await
        .unwrap();
    assert_eq!(calls.get("DescribeInstances"), 1, "create_node looked once");
    let seen = aws.discover_nodes(&fx.cluster).await.unwrap();
    assert!(
        seen.iter().all(|n| n.state == NodeState::Pending),
        "{seen:?}"
    );
    let ready = aws
        .wait_node(&fx.cluster, &node, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(ready.is_ready(), "{ready:?}");
    assert!(
        calls.get("DescribeInstances") >= 5,
        "the wait polled {} times",
        calls.get("DescribeInstances")
    );

    // A node that never gets running times out with a clear error.
    let (stuck, _) = scripted(|action, _| {
        (action == "DescribeInstances").then(|| {
            Fault::Rewrite(vec![(
                "<name>running</name>".into(),
                "<name>pending</name>".into(),
            )])
        })
    })
    .await;
    let err = stuck
        .wait_node(&fx.cluster, &node, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(&node.id), "{err}");

    aws.delete_node(&fx.cluster, &node).await.unwrap();
    aws.cleanup(&fx.cluster).await.unwrap();
}

/// The balancer answers `provisioning` twice, then `active`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_provisioning_balancer_is_waited_for() {
    let (aws, _) = scripted(|_, _| None).await;
    let fx = fixture(&aws, "prov").await;
    let mut req = fx.lb.clone();
    req.zones = crate::ZONES.iter().map(|z| z.to_string()).collect();
    let lb = aws.create_load_balancer(&fx.cluster, &req).await.unwrap();

    let (slow, slow_calls) = scripted(move |action, nth| {
        (action == "DescribeLoadBalancers" && nth < 2).then(|| {
            Fault::Rewrite(vec![(
                "<Code>active</Code>".into(),
                "<Code>provisioning</Code>".into(),
            )])
        })
    })
    .await;
    let active = slow
        .wait_load_balancer(&fx.cluster, &lb, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(active.state, LbState::Active);
    assert!(matches!(
        active.endpoint,
        Some(Endpoint::Hostname {
            alias_zone: Some(_),
            ..
        })
    ));
    assert_eq!(slow_calls.get("DescribeLoadBalancers"), 3);

    // A balancer that fails to provision is an error, not an endless wait.
    let (failed, _) = scripted(|action, _| {
        (action == "DescribeLoadBalancers").then(|| {
            Fault::Rewrite(vec![(
                "<Code>active</Code>".into(),
                "<Code>failed</Code>".into(),
            )])
        })
    })
    .await;
    let err = failed
        .wait_load_balancer(&fx.cluster, &lb, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("failed to provision"), "{err}");

    aws.delete_load_balancer(&fx.cluster).await.unwrap();
    aws.cleanup(&fx.cluster).await.unwrap();
}

/// GetChange says PENDING twice, then INSYNC; a change that stays PENDING times out.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_pending_route53_change_is_waited_for() {
    let (aws, calls) = scripted(|action, nth| {
        (action == "GetChange" && nth != 2)
            .then(|| Fault::Rewrite(vec![("INSYNC".into(), "PENDING".into())]))
    })
    .await;
    let fx = fixture(&aws, "r53p").await;
    let cluster = fx.cluster.clone();
    let req = RecordRequest::new(
        fx.fqdn.clone(),
        fx.dns_zone.clone(),
        RecordKind::A,
        fx.record_target.clone(),
    );
    aws.upsert_record(&cluster, &req).await.unwrap();
    aws.wait_record(&fx.dns_zone, &fx.fqdn, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(calls.get("GetChange"), 3, "PENDING, PENDING, INSYNC");

    aws.delete_record(&cluster, &fx.dns_zone, &fx.fqdn)
        .await
        .unwrap();
    let err = aws
        .wait_record(&fx.dns_zone, &fx.fqdn, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

/// Three nodes still starting are waited for with one `DescribeInstances` per
/// poll for all of them, not one per node.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn many_nodes_are_waited_for_with_one_call_per_poll() {
    let (aws, calls) = scripted(|action, nth| {
        (action == "DescribeInstances" && nth < 6).then(|| {
            Fault::Rewrite(vec![
                ("<name>running</name>".into(), "<name>pending</name>".into()),
                ("<privateIpAddress>".into(), "<ignoredIpAddress>".into()),
                ("</privateIpAddress>".into(), "</ignoredIpAddress>".into()),
            ])
        })
    })
    .await;
    let fx = fixture(&aws, "many").await;
    let zones = aws.zones(&fx.cluster).await.unwrap();
    let mut made = Vec::new();
    for (i, zone) in zones.iter().take(3).enumerate() {
        let req = fx.node_request(&fx.node_name(i + 1), zone);
        made.push(aws.create_node(&fx.cluster, &req).await.unwrap());
    }
    let before = calls.get("DescribeInstances");
    let ready = aws
        .wait_nodes(&fx.cluster, &made, Duration::from_secs(30))
        .await
        .unwrap();
    let polls = calls.get("DescribeInstances") - before;
    assert_eq!(ready.len(), 3);
    assert!(ready.iter().all(|n| n.private_ip.is_some()), "{ready:?}");
    let order: Vec<&str> = ready.iter().map(|n| n.id.as_str()).collect();
    let want: Vec<&str> = made.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, want, "in the order given");
    // The first 6 DescribeInstances answer "pending" (create_node's lookups
    // took `before` of them): the wait polls until then, and once more.
    assert!(before < 6, "{before}");
    assert_eq!(
        polls,
        6 - before + 1,
        "one DescribeInstances per poll for all 3 nodes"
    );
    for n in &made {
        aws.delete_node(&fx.cluster, n).await.unwrap();
    }
    aws.cleanup(&fx.cluster).await.unwrap();
}

/// Throttling is retried by the SDK — and only by it: with 3 attempts configured a
/// call is sent exactly 3 times, then fails as Throttled (retryable) for the caller.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn throttling_is_retried_by_the_sdk_alone() {
    let (aws, calls) = scripted(|action, nth| {
        (action == "DescribeVpcs" && nth < 2)
            .then(|| Fault::Respond(503, ec2_error("RequestLimitExceeded")))
    })
    .await;
    let cluster = ClusterRef::new(unique("thr"), REGION);
    let zones = aws.zones(&cluster).await.unwrap();
    assert!(zones.len() >= 3);
    assert_eq!(calls.get("DescribeVpcs"), 3, "2 throttled + 1 answered");

    let (aws, calls) = scripted(|action, _| {
        (action == "DescribeVpcs").then(|| Fault::Respond(400, ec2_error("RequestLimitExceeded")))
    })
    .await;
    let err = aws.zones(&cluster).await.unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Throttled), "{err}");
    assert!(err.is_retryable());
    assert_eq!(calls.get("DescribeVpcs"), 3, "no retry on top of the SDK's");
}

/// A 5xx without a parsable body is Transient, after the SDK's attempts.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn server_errors_are_transient() {
    let (aws, calls) = scripted(|action, _| {
        (action == "DescribeLoadBalancers")
            .then(|| Fault::Respond(503, "<html>Service Unavailable</html>".into()))
    })
    .await;
    let cluster = ClusterRef::new(unique("5xx"), REGION);
    let err = aws.discover_load_balancer(&cluster).await.unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Transient), "{err}");
    assert_eq!(calls.get("DescribeLoadBalancers"), 3);
}

/// No capacity in a zone: a Capacity error naming the zone and what to do.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn no_capacity_is_reported_clearly() {
    let (aws, calls) = scripted(|action, _| {
        (action == "RunInstances")
            .then(|| Fault::Respond(400, ec2_error("InsufficientInstanceCapacity")))
    })
    .await;
    let fx = fixture(&aws, "cap").await;
    let err = aws
        .create_node(
            &fx.cluster,
            &fx.node_request(&fx.node_name(1), "us-east-1b"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Capacity), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("us-east-1b") && text.contains("t3.micro"),
        "{text}"
    );
    assert_eq!(
        calls.get("RunInstances"),
        1,
        "capacity errors are not retried"
    );
    assert!(aws.discover_nodes(&fx.cluster).await.unwrap().is_empty());
    aws.cleanup(&fx.cluster).await.unwrap();
}

/// EC2 honours a client token for at least a day after its instance is terminated,
/// while terminated instances stay listed for about an hour. A node deleted and made
/// again after they vanish from the listing (scripted: DescribeInstances empty, and
/// RunInstances answering with the old, terminated instance, as AWS does for a
/// reused token) still gets a new instance; after a destroy (new security group) the
/// token is new from the start.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_node_made_again_within_a_day_gets_a_new_instance() {
    let (aws, calls) = scripted(|_, _| None).await;
    let fx = fixture(&aws, "tok").await;
    let zones = aws.zones(&fx.cluster).await.unwrap();
    let request = fx.node_request(&fx.node_name(1), &zones[0]);
    let first = aws.create_node(&fx.cluster, &request).await.unwrap();
    let first_token = calls.client_tokens()[0].clone();
    aws.delete_node(&fx.cluster, &first).await.unwrap();

    let old = first.id.clone();
    let (again, calls) = scripted(move |action, nth| match (action, nth) {
        // The terminated instance is no longer listed…
        ("DescribeInstances", 0) => Some(Fault::Respond(200, EMPTY_DESCRIBE.into())),
        // …but the token brings it back.
        ("RunInstances", 0) => Some(Fault::Respond(200, replayed_run(&old))),
        _ => None,
    })
    .await;
    let node = again.create_node(&fx.cluster, &request).await.unwrap();
    let tokens = calls.client_tokens();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(
        tokens[0], first_token,
        "the same spec and group: the old token first"
    );
    assert_ne!(
        tokens[1], first_token,
        "then a token naming the replayed instance"
    );
    assert_ne!(node.id, first.id);
    let state = aws
        .ec2_client()
        .describe_instances()
        .instance_ids(&node.id)
        .send()
        .await
        .unwrap();
    let i = &state.reservations()[0].instances()[0];
    assert_eq!(
        i.state().and_then(|s| s.name()).map(|s| s.as_str()),
        Some("running")
    );
    aws.delete_node(&fx.cluster, &node).await.unwrap();

    // Destroy (the security group goes), then make the node again: a new generation,
    // so a new token at the first try.
    aws.cleanup(&fx.cluster).await.unwrap();
    let (fresh, calls) = scripted(|action, nth| {
        (action == "DescribeInstances" && nth == 0)
            .then(|| Fault::Respond(200, EMPTY_DESCRIBE.into()))
    })
    .await;
    let node = fresh.create_node(&fx.cluster, &request).await.unwrap();
    let tokens = calls.client_tokens();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_ne!(tokens[0], first_token);
    fresh.delete_node(&fx.cluster, &node).await.unwrap();
    fresh.cleanup(&fx.cluster).await.unwrap();
}

const EMPTY_DESCRIBE: &str =
    "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
     <requestId>req-1</requestId><reservationSet/></DescribeInstancesResponse>";

/// What RunInstances answers for a token already used: the old reservation, its
/// instance terminated.
fn replayed_run(id: &str) -> String {
    format!(
        "<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>req-2</requestId><reservationId>r-0old</reservationId><ownerId>123456789012</ownerId>\
         <instancesSet><item><instanceId>{id}</instanceId><instanceState><code>48</code>\
         <name>terminated</name></instanceState><instanceType>t3.micro</instanceType>\
         <placement><availabilityZone>us-east-1a</availabilityZone></placement></item></instancesSet>\
         </RunInstancesResponse>"
    )
}
