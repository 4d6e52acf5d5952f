//! One error type for triad. Each variant says what failed, on which resource, and
//! whether retrying can help ([`Error::is_retryable`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A `Result` with triad's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem in a spec: the field, what is wrong, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    /// Dotted path of the field, e.g. `nodes.count` or `zones[1]`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.problem, self.fix)
    }
}

/// Every problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecProblems(pub Vec<SpecProblem>);

impl From<Vec<SpecProblem>> for SpecProblems {
    fn from(v: Vec<SpecProblem>) -> Self {
        Self(v)
    }
}

impl SpecProblems {
    /// Whether some problem names `field` exactly.
    pub fn names(&self, field: &str) -> bool {
        self.0.iter().any(|p| p.field == field)
    }
}

impl fmt::Display for SpecProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the spec",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// How a provider call failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The API throttled us (`RequestLimitExceeded`, HTTP 429): retry with backoff.
    Throttled,
    /// A transient server or network fault (HTTP 5xx, reset): retry with backoff.
    Transient,
    /// Out of capacity or quota in a zone or account.
    Capacity,
    /// The credentials lack a permission, or are wrong.
    Permission,
    /// The resource does not exist.
    NotFound,
    /// The request conflicts with existing state.
    Conflict,
    /// The cloud rejected the request as invalid.
    InvalidRequest,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Whether a call that failed this way may succeed if made again.
    pub fn is_retryable(self) -> bool {
        matches!(self, FailureKind::Throttled | FailureKind::Transient)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Throttled => "throttled",
            FailureKind::Transient => "transient failure",
            FailureKind::Capacity => "out of capacity",
            FailureKind::Permission => "permission denied",
            FailureKind::NotFound => "not found",
            FailureKind::Conflict => "conflict",
            FailureKind::InvalidRequest => "invalid request",
            FailureKind::Other => "failed",
        })
    }
}

/// Everything that can go wrong in triad.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec is invalid; every problem is listed.
    #[error("{0}")]
    InvalidSpec(SpecProblems),

    /// A spec document could not be parsed.
    #[error("cannot parse the spec ({format}): {message}")]
    Parse {
        /// `TOML`, `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message (it names the line and the field).
        message: String,
    },

    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },

    /// A cloud call failed.
    #[error("{provider}: {action} {resource}: {kind}: {message}")]
    Provider {
        /// Provider name (`sim`, `ec2`, …).
        provider: String,
        /// What was being done (`create node`, `delete load balancer`).
        action: String,
        /// The resource (`node rancher-1`, `load balancer rancher`).
        resource: String,
        /// How it failed.
        kind: FailureKind,
        /// The cloud's own message. Never contains credentials.
        message: String,
        /// The cloud's error code (`InvalidGroup.NotFound`, `RESOURCE_NOT_READY`), when
        /// it gave one, so callers can match on it instead of on `message`.
        code: Option<String>,
        /// Every retry was spent on this call already (by triad's [`Retry`] layer
        /// or by the provider's SDK): it is no longer retryable, so two retry loops
        /// stacked on one call cannot multiply their attempts.
        ///
        /// [`Retry`]: crate::layers::Retry
        exhausted: bool,
        /// The underlying error (an SDK's), for [`std::error::Error::source`]. Only
        /// errors whose `Debug` and `Display` hold no credentials belong here.
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A resource did not reach the wanted state in time.
    #[error("timed out after {after:?} waiting for {resource} to be {state}")]
    Timeout {
        /// The resource.
        resource: String,
        /// The state waited for.
        state: String,
        /// How long we waited.
        after: Duration,
    },

    /// A DNS record exists that this cluster does not own; triad never overwrites it.
    #[error(
        "DNS record {fqdn} exists and is not owned by cluster `{cluster}` ({owner}); \
             delete it yourself or choose another hostname"
    )]
    NotOwned {
        /// The record name.
        fqdn: String,
        /// This cluster.
        cluster: String,
        /// Who owns it, as far as we can tell.
        owner: String,
    },

    /// The plan would change the Rancher hostname of an existing cluster.
    #[error(
        "the cluster's Rancher hostname is `{from}`; the spec asks for `{to}`. Rancher's \
             hostname cannot change after installation: keep `{from}`, or allow the change \
             explicitly (Options::allow_hostname_change) if Rancher is not installed yet"
    )]
    HostnameChange {
        /// The hostname the cluster has.
        from: String,
        /// The hostname the spec asks for.
        to: String,
    },

    /// Apply failed part way; the listed resources exist and carry the cluster's
    /// labels, so a rerun of apply converges and destroy removes them.
    #[error("apply failed: {source}{}", left_behind(.cluster, .existing))]
    Apply {
        /// The cluster.
        cluster: String,
        /// The first failure.
        #[source]
        source: Box<Error>,
        /// Resources that exist now (created by this or an earlier run).
        existing: Vec<String>,
    },

    /// Destroy could not remove everything. It stops before a step that would orphan
    /// something (the balancer stays while the record pointing at it stays).
    #[error(
        "destroy left resources behind: {}{}{}",
        .failures.iter().map(|(r, e)| format!("{r}: {e}")).collect::<Vec<_>>().join("; "),
        list("\nremoved", .deleted),
        list("\nstill there (fix the cause and run destroy again)", .remaining)
    )]
    Destroy {
        /// Each resource that could not be removed, with why.
        failures: Vec<(String, Error)>,
        /// What was removed before it stopped.
        deleted: Vec<String>,
        /// What is still there, failed or not attempted.
        remaining: Vec<String>,
    },

    /// Resources with the cluster's name belong to two different clusters (their
    /// cluster ids differ), or the spec names another cluster's id.
    #[error(
        "two clusters are named `{cluster}`: {first}, but {second}. triad never adopts \
             or deletes another cluster's resources: give this cluster another name, or \
             remove the stray resources yourself"
    )]
    Identity {
        /// The cluster name.
        cluster: String,
        /// One resource and its id.
        first: String,
        /// Another resource and its other id.
        second: String,
    },

    /// Another run holds the cluster's lock.
    #[error(
        "cluster `{cluster}` is locked by `{holder}` since {since} (lease until {expires}){}",
        if *.stale {
            "; the lease has expired: if that run crashed, break the lock explicitly \
             (Options::break_stale_lock, `--break-stale-lock`)"
        } else {
            "; wait for that run to finish (Options::lock_wait), then try again"
        }
    )]
    Locked {
        /// The cluster.
        cluster: String,
        /// Who holds it.
        holder: String,
        /// Since when (UTC, RFC 3339).
        since: String,
        /// Until when the lease runs (UTC, RFC 3339).
        expires: String,
        /// Whether the lease has expired.
        stale: bool,
    },
}

fn list(title: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{title}: {}", items.join(", "))
    }
}

fn left_behind(cluster: &str, existing: &[String]) -> String {
    if existing.is_empty() {
        return String::new();
    }
    format!(
        "\nthese resources exist and carry the label triad-cluster={cluster}: {}\n\
         rerun apply to converge, or destroy to remove them",
        existing.join(", ")
    )
}

impl Error {
    /// A single spec problem.
    pub fn invalid(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::InvalidSpec(SpecProblems(vec![SpecProblem {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }]))
    }

    /// A provider failure.
    pub fn provider(
        provider: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Self {
        Error::Provider {
            provider: provider.into(),
            action: action.into(),
            resource: resource.into(),
            kind,
            message: message.into(),
            code: None,
            exhausted: false,
            source: None,
        }
    }

    /// The same provider error with the cloud's error code; other errors unchanged.
    pub fn with_code(mut self, new: impl Into<String>) -> Self {
        if let Error::Provider { code, .. } = &mut self {
            *code = Some(new.into());
        }
        self
    }

    /// The same provider error caused by `cause` (see [`Error::Provider`]'s `source`:
    /// nothing whose text could hold a credential); other errors unchanged.
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        if let Error::Provider { source, .. } = &mut self {
            *source = Some(Box::new(cause));
        }
        self
    }

    /// The same error marked as having spent every retry: it is no longer
    /// [retryable](Error::is_retryable). A provider whose SDK already retried a call
    /// marks its error so; triad's retry layer marks the error of its last attempt.
    pub fn exhausted(mut self) -> Self {
        self.mark_exhausted();
        self
    }

    fn mark_exhausted(&mut self) {
        match self {
            Error::Provider { exhausted, .. } => *exhausted = true,
            Error::Apply { source, .. } => source.mark_exhausted(),
            _ => {}
        }
    }

    /// The cloud's error code of a provider error, if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Provider { code, .. } => code.as_deref(),
            Error::Apply { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether making the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Provider {
                kind, exhausted, ..
            } => !exhausted && kind.is_retryable(),
            Error::Timeout { .. } => true,
            Error::Apply { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The failure kind of a provider error.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            Error::Provider { kind, .. } => Some(*kind),
            Error::Apply { source, .. } => source.kind(),
            _ => None,
        }
    }

    /// The spec problems, if this is [`Error::InvalidSpec`].
    pub fn spec_problems(&self) -> Option<&SpecProblems> {
        match self {
            Error::InvalidSpec(p) => Some(p),
            _ => None,
        }
    }
}
