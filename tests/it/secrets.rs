//! A proxy password never reaches logs, `Debug` or `Display` output, serialized plans
//! and inventories, progress events, errors or the rendered next steps.

use std::io::Write;
use std::sync::{Arc, Mutex};

use triad::events::RecordingObserver;
use triad::layers::{CallCounter, RetryPolicy, Stack};
use triad::sim::SimFault;
use triad::{bootstrap, render, FailureKind, Orchestrator};

use crate::common::*;

const PASSWORD: &str = "Sup3r-S3cret-Pr0xy";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn proxy_password_stays_out_of_every_output() {
    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let spec = {
        let mut s = spec().into_inner();
        s.proxy.as_mut().unwrap().http =
            triad::secret::ProxyUrl::new(format!("http://ops:{PASSWORD}@proxy.internal:3128"));
        s.validate().unwrap()
    };
    // The nodes must get it: that is where it belongs.
    assert!(bootstrap::user_data(&spec, "rancher-1").contains(PASSWORD));

    let sim = cloud();
    // Make some calls fail so retries are logged and errors formatted.
    sim.inject(
        SimFault::on_any_mutating()
            .probability(0.3)
            .kind(FailureKind::Transient),
    );
    let events = Arc::new(RecordingObserver::default());
    let p = Arc::new(
        Stack::new(Arc::new(sim.clone()))
            .count(CallCounter::new())
            .retry(RetryPolicy::default().max_attempts(20))
            .build(),
    );
    let o = Orchestrator::new(p.clone(), p.clone(), p).with_observer(events.clone());
    let plan = o.plan(&spec).await.unwrap();
    let inv = o.apply(&plan).await.unwrap();
    sim.clear_faults();

    // A failing apply, formatted every way.
    sim.inject(
        SimFault::on(triad::sim::SimApi::RunInstance)
            .always()
            .kind(FailureKind::Permission),
    );
    let mut bigger = spec.clone().into_inner();
    bigger.nodes.count = 5;
    let bigger = bigger.validate().unwrap();
    let err = o.apply(&o.plan(&bigger).await.unwrap()).await.unwrap_err();
    sim.clear_faults();
    o.destroy(&spec.cluster()).await.unwrap();

    let outputs = [
        (
            "logs",
            String::from_utf8(logs.0.lock().unwrap().clone()).unwrap(),
        ),
        ("spec debug", format!("{spec:?}")),
        ("spec json", serde_json::to_string(&*spec).unwrap()),
        ("plan display", plan.to_string()),
        ("plan debug", format!("{plan:?}")),
        ("plan json", serde_json::to_string(&plan).unwrap()),
        ("inventory debug", format!("{inv:?}")),
        ("inventory json", render::inventory_json(&inv)),
        ("next steps", render::next_steps(&spec, &inv)),
        ("helm", render::helm_install(&spec, &inv)),
        ("events", format!("{:?}", events.events())),
        ("error display", err.to_string()),
        ("error debug", format!("{err:?}")),
        ("orchestrator debug", format!("{o:?}")),
    ];
    assert!(
        outputs[0].1.len() > 100,
        "logs were captured: {}",
        outputs[0].1
    );
    for (what, text) in outputs {
        assert!(
            !text.contains(PASSWORD),
            "{what} leaks the proxy password:\n{text}"
        );
    }
}
