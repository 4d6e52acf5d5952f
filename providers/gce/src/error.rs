//! Mapping Compute Engine and Cloud DNS failures to triad's errors.

use google_cloud_compute_v1::model::Operation;
use google_cloud_gax::error::Error as GaxError;
use triad_core::error::{Error, FailureKind};

/// The provider name in every error.
pub(crate) const PROVIDER: &str = "gce";

/// What a failed call said, as far as triad cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HTTP status, when the service answered.
    pub code: Option<u16>,
    /// Google's `errors[0].reason` (`notFound`, `alreadyExists`, …).
    pub reason: Option<String>,
    /// The service's message.
    pub message: String,
}

impl Failure {
    /// Read the status code, reason and message of an SDK error. Tests the HTTP code,
    /// not the RPC status: a 404 body without `"status"` maps to `Unknown`.
    pub(crate) fn of(e: &GaxError) -> Self {
        let code = e.http_status_code();
        let body = e
            .http_payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
        let err = body.as_ref().and_then(|b| b.get("error"));
        let reason = err
            .and_then(|e| e.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("reason"))
            .and_then(|r| r.as_str())
            .map(str::to_owned);
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .or_else(|| e.status().map(|s| s.message.clone()))
            .unwrap_or_else(|| e.to_string());
        let kind_hint = if code.is_none() {
            if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() {
                Some("transport".to_owned())
            } else if e.is_authentication() {
                Some("authentication".to_owned())
            } else {
                None
            }
        } else {
            None
        };
        Self {
            code,
            reason: reason.or(kind_hint),
            message,
        }
    }

    /// The failure kind: throttling and 5xx are retryable, 404 is NotFound, …
    pub(crate) fn kind(&self) -> FailureKind {
        classify(self.code, self.reason.as_deref())
    }

    /// HTTP 404.
    pub(crate) fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }

    /// HTTP 409 (the name is taken).
    pub(crate) fn is_conflict(&self) -> bool {
        self.code == Some(409)
    }
}

/// The [`FailureKind`] of an HTTP status and Google error reason.
pub(crate) fn classify(code: Option<u16>, reason: Option<&str>) -> FailureKind {
    match reason {
        Some("rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED") => {
            return FailureKind::Throttled
        }
        Some(
            "quotaExceeded"
            | "QUOTA_EXCEEDED"
            | "ZONE_RESOURCE_POOL_EXHAUSTED"
            | "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
            | "resourcePoolExhausted",
        ) => return FailureKind::Capacity,
        Some("resourceInUseByAnotherResource" | "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE") => {
            return FailureKind::Conflict
        }
        Some("RESOURCE_NOT_FOUND") => return FailureKind::NotFound,
        Some("RESOURCE_ALREADY_EXISTS") => return FailureKind::Conflict,
        Some("transport") => return FailureKind::Transient,
        Some("authentication") => return FailureKind::Permission,
        _ => {}
    }
    match code {
        Some(429) => FailureKind::Throttled,
        Some(500..=599) => FailureKind::Transient,
        Some(401 | 403) => FailureKind::Permission,
        Some(404) => FailureKind::NotFound,
        Some(409 | 412) => FailureKind::Conflict,
        Some(400) => FailureKind::InvalidRequest,
        _ => FailureKind::Other,
    }
}

/// A triad error for a failed SDK call.
pub(crate) fn sdk(action: &str, resource: &str, e: &GaxError) -> Error {
    let f = Failure::of(e);
    let message = match (&f.code, &f.reason) {
        (Some(c), Some(r)) => format!("HTTP {c} {r}: {}", f.message),
        (Some(c), None) => format!("HTTP {c}: {}", f.message),
        _ => f.message.clone(),
    };
    Error::provider(PROVIDER, action, resource, f.kind(), message)
}

/// A triad error for an operation that finished with errors.
pub(crate) fn operation(action: &str, resource: &str, op: &Operation) -> Option<Error> {
    let errors = op
        .error
        .as_ref()
        .map(|e| e.errors.as_slice())
        .unwrap_or(&[]);
    let first = errors.first()?;
    let code = first.code.clone().unwrap_or_default();
    let http = op
        .http_error_status_code
        .and_then(|c| u16::try_from(c).ok());
    let kind = match classify(None, Some(&code)) {
        FailureKind::Other => classify(http, None),
        k => k,
    };
    let messages: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("ERROR"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    Some(Error::provider(
        PROVIDER,
        action,
        resource,
        kind,
        messages.join("; "),
    ))
}

/// A triad error the provider raises itself.
pub(crate) fn own(
    action: &str,
    resource: &str,
    kind: FailureKind,
    message: impl Into<String>,
) -> Error {
    Error::provider(PROVIDER, action, resource, kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_reason_then_status() {
        assert_eq!(
            classify(Some(403), Some("rateLimitExceeded")),
            FailureKind::Throttled
        );
        assert_eq!(classify(Some(429), None), FailureKind::Throttled);
        assert_eq!(
            classify(Some(503), Some("backendError")),
            FailureKind::Transient
        );
        assert_eq!(
            classify(Some(403), Some("forbidden")),
            FailureKind::Permission
        );
        assert_eq!(classify(Some(401), None), FailureKind::Permission);
        assert_eq!(classify(Some(404), Some("notFound")), FailureKind::NotFound);
        assert_eq!(
            classify(Some(409), Some("alreadyExists")),
            FailureKind::Conflict
        );
        assert_eq!(
            classify(Some(400), Some("resourceInUseByAnotherResource")),
            FailureKind::Conflict
        );
        assert_eq!(
            classify(Some(400), Some("invalid")),
            FailureKind::InvalidRequest
        );
        assert_eq!(
            classify(Some(403), Some("quotaExceeded")),
            FailureKind::Capacity
        );
        assert_eq!(
            classify(None, Some("ZONE_RESOURCE_POOL_EXHAUSTED")),
            FailureKind::Capacity
        );
        assert_eq!(classify(None, Some("transport")), FailureKind::Transient);
        assert_eq!(classify(None, None), FailureKind::Other);
    }

    #[test]
    fn http_errors_are_read_from_the_body() {
        let body = br#"{"error":{"code":404,"message":"The resource 'x' was not found","errors":[{"reason":"notFound","message":"m","domain":"global"}]}}"#;
        let e = GaxError::http(404, Default::default(), bytes_of(body));
        let f = Failure::of(&e);
        assert_eq!(f.code, Some(404));
        assert_eq!(f.reason.as_deref(), Some("notFound"));
        assert_eq!(f.message, "The resource 'x' was not found");
        assert!(f.is_not_found());
        let err = sdk("get instance", "instance rancher-1", &e);
        assert_eq!(err.kind(), Some(FailureKind::NotFound));
        assert!(err.to_string().contains("HTTP 404 notFound"), "{err}");

        let e = GaxError::http(429, Default::default(), bytes_of(b"not json"));
        let err = sdk("insert instance", "instance rancher-1", &e);
        assert_eq!(err.kind(), Some(FailureKind::Throttled));
        assert!(err.is_retryable());
    }

    #[test]
    fn operation_errors_map_by_code() {
        let mut op = Operation::default();
        assert!(operation("create", "node", &op).is_none());
        let mut e = google_cloud_compute_v1::model::operation::Error::default();
        let mut item = google_cloud_compute_v1::model::operation::error::Errors::default();
        item.code = Some("ZONE_RESOURCE_POOL_EXHAUSTED".into());
        item.message = Some("no e2 left".into());
        e.errors.push(item);
        op.error = Some(e);
        let err = operation("create node", "instance rancher-1", &op).unwrap();
        assert_eq!(err.kind(), Some(FailureKind::Capacity));
        assert!(err.to_string().contains("no e2 left"));
    }

    fn bytes_of(b: &[u8]) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(b)
    }
}
