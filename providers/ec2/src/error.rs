//! AWS SDK errors → triad's [`Error::Provider`], with the right [`FailureKind`].

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use triad_core::error::{Error, FailureKind};

/// The provider name in errors and the inventory.
pub const PROVIDER: &str = "ec2";

/// How an AWS error code (and, failing that, the HTTP status) fails, as far as
/// retrying is concerned.
///
/// ```
/// use triad_core::FailureKind;
/// use triad_ec2::error::classify;
/// assert_eq!(classify(Some("RequestLimitExceeded"), Some(503)), FailureKind::Throttled);
/// assert_eq!(classify(Some("InvalidInstanceID.NotFound"), Some(400)), FailureKind::NotFound);
/// assert_eq!(classify(None, Some(502)), FailureKind::Transient);
/// ```
pub fn classify(code: Option<&str>, status: Option<u16>) -> FailureKind {
    if let Some(code) = code {
        match code {
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "PriorRequestNotComplete"
            | "SlowDown"
            | "EC2ThrottledException" => return FailureKind::Throttled,
            "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "Unavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "IDPCommunicationError" => return FailureKind::Transient,
            "InsufficientInstanceCapacity"
            | "InsufficientCapacity"
            | "InsufficientHostCapacity"
            | "InsufficientReservedInstanceCapacity"
            | "InstanceLimitExceeded"
            | "VcpuLimitExceeded"
            | "MaxSpotInstanceCountExceeded"
            | "RulesPerSecurityGroupLimitExceeded"
            | "SecurityGroupLimitExceeded"
            | "TooManyLoadBalancers"
            | "TooManyTargetGroups"
            | "TooManyListeners"
            | "TooManyTargets"
            | "TooManyRegistrationsForTargetId"
            | "TooManyTags"
            | "ResourceLimitExceeded"
            | "LimitExceeded" => return FailureKind::Capacity,
            "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "UnrecognizedClientException"
            | "OptInRequired"
            | "Blocked"
            | "MissingAuthenticationToken"
            | "NotAuthorizedException" => return FailureKind::Permission,
            "DependencyViolation"
            | "ResourceInUse"
            | "InvalidGroup.Duplicate"
            | "DuplicateLoadBalancerName"
            | "DuplicateTargetGroupName"
            | "DuplicateListener"
            | "IdempotentParameterMismatch"
            | "IncorrectState"
            | "IncorrectInstanceState"
            | "OperationNotPermitted"
            | "InvalidPermission.Duplicate" => return FailureKind::Conflict,
            c if c.ends_with(".NotFound")
                || c.ends_with("NotFound")
                || c.ends_with("NotFoundException")
                || c.starts_with("NoSuch") =>
            {
                return FailureKind::NotFound
            }
            c if c.starts_with("Invalid")
                || c.starts_with("Missing")
                || c.starts_with("Unsupported")
                || c == "ValidationError" =>
            {
                return FailureKind::InvalidRequest
            }
            _ => {}
        }
    }
    match status {
        Some(429) => FailureKind::Throttled,
        Some(s) if s >= 500 => FailureKind::Transient,
        Some(401 | 403) => FailureKind::Permission,
        Some(404) => FailureKind::NotFound,
        Some(409) => FailureKind::Conflict,
        Some(400..=499) => FailureKind::InvalidRequest,
        _ => FailureKind::Other,
    }
}

/// An SDK error reduced to what triad needs: the AWS code, the message, the kind.
#[derive(Debug, Clone)]
pub(crate) struct AwsError {
    pub code: Option<String>,
    pub message: String,
    pub kind: FailureKind,
}

impl AwsError {
    pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        match &err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                let code = e.code().map(str::to_owned);
                let message = match (e.code(), e.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_owned(),
                    (None, Some(m)) => m.to_owned(),
                    (None, None) => format!("HTTP {}", status.unwrap_or(0)),
                };
                let kind = classify(code.as_deref(), status);
                Self {
                    code,
                    message,
                    kind,
                }
            }
            SdkError::TimeoutError(_) => Self {
                code: None,
                message: "the call timed out".into(),
                kind: FailureKind::Transient,
            },
            SdkError::DispatchFailure(d) => Self {
                code: None,
                message: format!("cannot reach AWS: {}", chain(&err)),
                kind: if d.is_user() {
                    FailureKind::Other
                } else {
                    FailureKind::Transient
                },
            },
            SdkError::ResponseError(_) => Self {
                code: None,
                message: format!(
                    "unreadable response (HTTP {}): {}",
                    status.unwrap_or(0),
                    chain(&err)
                ),
                kind: classify(None, status),
            },
            _ => Self {
                code: None,
                message: chain(&err),
                kind: FailureKind::Other,
            },
        }
    }

    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub(crate) fn into_error(self, action: &str, resource: impl Into<String>) -> Error {
        let err = Error::provider(PROVIDER, action, resource, self.kind, self.message);
        match self.code {
            Some(code) => err.with_code(code),
            None => err,
        }
    }
}

/// The error and its sources on one line. SDK errors never carry credentials: the
/// signature is computed locally and only the access key id travels.
fn chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Map an SDK error for `action` on `resource`.
pub(crate) fn sdk<E>(
    action: &str,
    resource: impl Into<String>,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let (action, resource) = (action.to_owned(), resource.into());
    move |err| AwsError::from_sdk(err).into_error(&action, resource)
}

/// A provider error made here (not by AWS).
pub(crate) fn fail(
    action: &str,
    resource: impl Into<String>,
    kind: FailureKind,
    message: impl Into<String>,
) -> Error {
    Error::provider(PROVIDER, action, resource, kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_code_reaches_the_error() {
        let e = AwsError {
            code: Some("InvalidGroup.NotFound".into()),
            message: "InvalidGroup.NotFound: gone".into(),
            kind: FailureKind::NotFound,
        }
        .into_error("create node", "node n");
        assert_eq!(e.code(), Some("InvalidGroup.NotFound"));
        assert_eq!(e.kind(), Some(FailureKind::NotFound));
    }

    #[test]
    fn codes_win_over_statuses() {
        use FailureKind::*;
        for (code, status, want) in [
            ("Throttling", 400, Throttled),
            ("RequestLimitExceeded", 503, Throttled),
            ("PriorRequestNotComplete", 400, Throttled),
            ("InsufficientInstanceCapacity", 500, Capacity),
            ("VcpuLimitExceeded", 400, Capacity),
            ("UnauthorizedOperation", 403, Permission),
            ("AuthFailure", 401, Permission),
            ("InvalidInstanceID.NotFound", 400, NotFound),
            ("LoadBalancerNotFound", 400, NotFound),
            ("NoSuchHostedZone", 404, NotFound),
            ("DependencyViolation", 400, Conflict),
            ("ResourceInUse", 400, Conflict),
            ("InvalidParameterValue", 400, InvalidRequest),
            ("InvalidChangeBatch", 400, InvalidRequest),
            ("ValidationError", 400, InvalidRequest),
            ("InternalError", 500, Transient),
            ("ServiceUnavailable", 503, Transient),
            ("SomethingNew", 503, Transient),
            ("SomethingNew", 429, Throttled),
            ("SomethingNew", 400, InvalidRequest),
        ] {
            assert_eq!(classify(Some(code), Some(status)), want, "{code} {status}");
        }
        assert_eq!(classify(None, None), Other);
        assert!(classify(Some("Throttling"), None).is_retryable());
        assert!(!classify(Some("InvalidAMIID.NotFound"), None).is_retryable());
    }
}
