//! triad on AWS: EC2 nodes, an NLB (l4) or ALB (l7), and a Route 53 record.
//!
//! Reads the standard AWS environment — the default credentials chain
//! (`AWS_ACCESS_KEY_ID`…, `AWS_PROFILE`, SSO, instance roles), `AWS_ENDPOINT_URL`
//! (e.g. a moto server) and `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` — and the
//! region from the spec. See docs/ec2.md for the `[ec2]` section and a walkthrough.
//!
//! ```text
//! cargo run --example ec2 --features ec2 -- plan    --config cluster.toml
//! cargo run --example ec2 --features ec2 -- apply   --config cluster.toml [--output json]
//! cargo run --example ec2 --features ec2 -- destroy --config cluster.toml
//! ```

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::CloudArgs;
use triad::ec2::Ec2;
use triad::Orchestrator;

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = CloudArgs::parse();
    common::exit_code(run(args).await)
}

async fn run(args: CloudArgs) -> triad::Result<ExitCode> {
    let spec = common::load_spec(&args)?;
    let aws = Arc::new(Ec2::from_spec(&spec).await?);
    // No retry layer: the AWS SDK retries throttled and transient calls itself.
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws).with_options(args.options());
    common::run(triad, &spec, &args).await
}
