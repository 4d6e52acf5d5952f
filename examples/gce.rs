//! triad on Google Compute Engine: instances, a regional passthrough Network Load
//! Balancer (l4) or a global HTTPS load balancer (l7), and a Cloud DNS record.
//!
//! ```text
//! cargo run --example gce --features gce -- plan    --config cluster.toml
//! cargo run --example gce --features gce -- apply   --config cluster.toml [--output json]
//! cargo run --example gce --features gce -- destroy --config cluster.toml
//! ```
//!
//! Credentials are Application Default Credentials (`gcloud auth
//! application-default login`, or `GOOGLE_APPLICATION_CREDENTIALS`). With
//! `TRIAD_GCE_ENDPOINT=http://127.0.0.1:PORT` every call goes, without credentials, to
//! that test server instead (`testing/fake-gce`; see docs/gce.md).

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::CloudArgs;
use triad::gce::{Connection, GceProvider};
use triad::Orchestrator;

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = CloudArgs::parse();
    common::exit(run(args).await)
}

async fn run(args: CloudArgs) -> triad::Result<()> {
    let spec = common::load_spec(&args)?;
    let connection = Connection::from_env();
    if let Some(endpoint) = &connection.endpoint {
        eprintln!("using the test endpoint {endpoint} without credentials ($TRIAD_GCE_ENDPOINT)");
    }
    let gce = Arc::new(GceProvider::from_spec_with(&spec, connection).await?);
    let orchestrator =
        Orchestrator::new(gce.clone(), gce.clone(), gce).with_options(args.options());
    common::run(
        orchestrator,
        &spec,
        args.command,
        args.output,
        args.out.as_deref(),
    )
    .await
}
