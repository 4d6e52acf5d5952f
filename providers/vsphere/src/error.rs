//! vim_rs errors → triad's [`Error::Provider`].

use std::error::Error as _;

use triad_core::{Error, FailureKind};
use vim_rs::core::client::Error as VimError;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::MethodFault;

use crate::PROVIDER;

/// How a fault of `type_` fails, as far as retrying is concerned.
pub(crate) fn fault_kind(type_: Option<&StructType>) -> FailureKind {
    let Some(t) = type_ else {
        return FailureKind::Other;
    };
    let name = t.as_str();
    match name {
        "InvalidLogin"
        | "NotAuthenticated"
        | "NoPermission"
        | "InvalidCertificate"
        | "RestrictedVersion"
        | "NoClientCertificate" => FailureKind::Permission,
        "ManagedObjectNotFound" | "NotFound" | "FileNotFound" | "InvalidDatastorePath" => {
            FailureKind::NotFound
        }
        "DuplicateName" | "AlreadyExists" | "InvalidPowerState" | "InvalidState"
        | "ConcurrentAccess" => FailureKind::Conflict,
        "TaskInProgress" | "HostCommunication" | "HostNotConnected" | "Timedout"
        | "SystemError" | "RequestCanceled" => FailureKind::Transient,
        "InsufficientResourcesFault"
        | "NotEnoughCpus"
        | "NotEnoughLicenses"
        | "OutOfBounds"
        | "InsufficientMemoryResourcesFault"
        | "InsufficientCpuResourcesFault"
        | "NoDiskSpace"
        | "InsufficientStorageSpace" => FailureKind::Capacity,
        "InvalidArgument" | "InvalidRequest" | "InvalidName" | "InvalidType" | "NotSupported"
        | "InvalidProperty" => FailureKind::InvalidRequest,
        _ => FailureKind::Other,
    }
}

/// A readable text for a fault: its type, its messages and its simple fields.
pub(crate) fn fault_text(fault: &MethodFault) -> String {
    let mut parts = vec![fault
        .type_
        .as_ref()
        .map_or("MethodFault".to_owned(), |t| t.as_str().to_owned())];
    for m in fault.fault_message.iter().flatten() {
        match &m.message {
            Some(text) if !text.is_empty() => parts.push(text.clone()),
            _ => parts.push(m.key.clone()),
        }
    }
    let mut extra: Vec<(&String, String)> = fault
        .extra_fields_
        .iter()
        .filter_map(|(k, v)| {
            let s = miniserde::json::to_string(v);
            (s.len() <= 200).then_some((k, s))
        })
        .collect();
    extra.sort();
    for (k, v) in extra {
        parts.push(format!("{k}={v}"));
    }
    if let Some(cause) = &fault.fault_cause {
        parts.push(format!("caused by {}", fault_text(cause)));
    }
    parts.join(": ")
}

/// The kind and message of a vim_rs client error.
pub(crate) fn classify(e: &VimError) -> (FailureKind, String) {
    match e {
        VimError::MethodFault(f) => (fault_kind(f.type_.as_ref()), fault_text(f)),
        VimError::ReqwestError(r) => {
            let kind = if r.is_timeout() || r.is_connect() {
                FailureKind::Transient
            } else {
                match r.status().map(|s| s.as_u16()) {
                    Some(429) => FailureKind::Throttled,
                    Some(401 | 403) => FailureKind::Permission,
                    Some(404) => FailureKind::NotFound,
                    Some(s) if s >= 500 => FailureKind::Transient,
                    _ => FailureKind::Other,
                }
            };
            // reqwest's Display hides the cause (e.g. the TLS verification error).
            let mut msg = r.to_string();
            let mut source = r.source();
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            (kind, msg)
        }
        VimError::MissingOrInvalidSessionKey => (
            FailureKind::Permission,
            "missing or invalid session key".into(),
        ),
        other => (FailureKind::Other, other.to_string()),
    }
}

/// A provider error for a vim_rs client error.
pub(crate) fn vim(action: &str, resource: &str, e: &VimError) -> Error {
    let (kind, message) = classify(e);
    Error::provider(PROVIDER, action, resource, kind, message)
}

/// A provider error for a property-collector error.
pub(crate) fn pc(action: &str, resource: &str, e: &vim_rs::core::error::Error) -> Error {
    if let Some(c) = e.client_error() {
        return vim(action, resource, c);
    }
    Error::provider(
        PROVIDER,
        action,
        resource,
        FailureKind::Other,
        e.to_string(),
    )
}

/// A provider error of `kind`.
pub(crate) fn other(
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
    use std::sync::Arc;

    fn fault(t: StructType) -> VimError {
        VimError::MethodFault(Arc::new(MethodFault {
            fault_cause: None,
            fault_message: None,
            type_: Some(t),
            extra_fields_: Default::default(),
        }))
    }

    #[test]
    fn kinds() {
        assert_eq!(
            classify(&fault(StructType::InvalidLogin)).0,
            FailureKind::Permission
        );
        assert_eq!(
            classify(&fault(StructType::NoPermission)).0,
            FailureKind::Permission
        );
        assert_eq!(
            classify(&fault(StructType::ManagedObjectNotFound)).0,
            FailureKind::NotFound
        );
        assert_eq!(
            classify(&fault(StructType::DuplicateName)).0,
            FailureKind::Conflict
        );
        assert_eq!(
            classify(&fault(StructType::TaskInProgress)).0,
            FailureKind::Transient
        );
        assert_eq!(
            classify(&fault(StructType::InsufficientResourcesFault)).0,
            FailureKind::Capacity
        );
        assert_eq!(
            classify(&fault(StructType::InvalidArgument)).0,
            FailureKind::InvalidRequest
        );
        assert_eq!(
            classify(&VimError::ParseError("x".into())).0,
            FailureKind::Other
        );
    }

    #[test]
    fn text_names_the_fault() {
        let (_, text) = classify(&fault(StructType::InvalidLogin));
        assert!(text.starts_with("InvalidLogin"), "{text}");
    }
}
