//! The worker that owns the vCenter session: a thread with its own current-thread
//! tokio runtime and a [`LocalSet`], taking jobs over a channel and answering each
//! over a oneshot.
//!
//! `async_trait` needs the provider's futures to be `Send`. Futures that hold vim_rs
//! data across an `.await` are `Send` in fact, but proving it makes rustc walk vim_rs's
//! whole (cyclic) type graph, for minutes per method. Here the futures that touch
//! vim_rs run on the worker's thread and are never asked to be `Send`
//! ([`spawn_local`](tokio::task::spawn_local)); what crosses the channel is a boxed
//! closure over triad's own types and the answer, both plainly `Send`. So there is no
//! `unsafe` and no auto-trait proof over vim_rs.
//!
//! The session lives as long as the last handle: when every [`Worker`] clone is
//! dropped the channel closes, the worker logs out and its thread ends. A caller that
//! stops waiting (its future dropped, a timeout) cancels its job at the job's next
//! `.await`, as a plain future would be.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::LocalSet;
use triad_core::{Error, FailureKind, Result};

use crate::client::{self, Counted, Tally};
use crate::error;
use crate::settings::VsphereSettings;
use crate::vcenter::Vcenter;

type Job = Box<dyn FnOnce(Rc<Vcenter>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A handle on the worker; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Worker {
    /// Start the worker thread and log in to vCenter on it.
    pub(crate) async fn start(settings: VsphereSettings, tally: Tally) -> Result<Self> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("triad-vsphere".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Io {
                            path: "tokio runtime of the vSphere worker".into(),
                            message: e.to_string(),
                        }));
                        return;
                    }
                };
                LocalSet::new().block_on(&runtime, async move {
                    let client = match client::connect(&settings).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let vcenter = Rc::new(Vcenter::new(
                        settings,
                        std::sync::Arc::new(Counted::new(client.clone(), tally)),
                    ));
                    if ready_tx.send(Ok(())).is_err() {
                        let _ = client.close().await;
                        return;
                    }
                    while let Some(job) = rx.recv().await {
                        tokio::task::spawn_local(job(vcenter.clone()));
                    }
                    // Every handle is gone: end the session.
                    if let Err(e) = client.close().await {
                        tracing::debug!(error = %e, "logging out of vCenter failed");
                    }
                });
            })
            .map_err(|e| Error::Io {
                path: "thread of the vSphere worker".into(),
                message: e.to_string(),
            })?;
        ready_rx.await.map_err(|_| stopped())??;
        Ok(Self { jobs })
    }

    /// Run `job` on the worker with the session, and return its answer.
    pub(crate) async fn call<T, F, Fut>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Vcenter>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let boxed: Job = Box::new(move |vcenter| {
            Box::pin(async move {
                let mut tx = tx;
                let answer = tokio::select! {
                    answer = job(vcenter) => Some(answer),
                    // The caller stopped waiting: stop at the next await.
                    () = tx.closed() => None,
                };
                if let Some(answer) = answer {
                    let _ = tx.send(answer);
                }
            })
        });
        self.jobs.send(boxed).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    error::other(
        "reach",
        "vCenter",
        FailureKind::Other,
        "the vSphere worker thread has stopped",
    )
}
