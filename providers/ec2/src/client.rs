//! The AWS SDK configuration: an HTTPS client that honours the operator's proxy
//! variables, the SDK's own retry (and only it), and timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// An HTTPS client (rustls with the *ring* provider, the system's trust store) that
/// sends requests through the proxy named by `HTTPS_PROXY` / `HTTP_PROXY` (and their
/// lowercase forms), except for hosts matched by `NO_PROXY`. The Rust AWS SDK's
/// default client ignores these variables; an operator behind a proxy needs this one.
///
/// The variables are read when the SDK first opens a connection.
pub fn http_client() -> SharedHttpClient {
    http_client_with_proxy(ProxyConfig::from_env())
}

/// An HTTPS client with an explicit proxy configuration (for embedders that hold
/// their proxy settings elsewhere).
pub fn http_client_with_proxy(proxy: ProxyConfig) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(proxy.clone())
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build()
    })
}

/// The retry policy: the SDK's standard mode (exponential backoff with jitter, a
/// client-side token bucket, throttling and transient errors only) with
/// `max_attempts` tries per call. triad's own retry layer must not be stacked on
/// top of this provider: the two would multiply.
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    if max_attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard()
            .with_max_attempts(max_attempts)
            .with_initial_backoff(Duration::from_millis(500))
            .with_max_backoff(Duration::from_secs(20))
    }
}

/// Connect within 10 s; give one try of a call 60 s.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// Load the SDK configuration for `region` from the standard AWS environment: the
/// default credentials chain (environment, profile, SSO, web identity, container,
/// instance metadata), `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_PROFILE`
/// — with [`http_client`], [`retry_config`] and [`timeout_config`].
pub async fn load_sdk_config(region: &str, max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .http_client(http_client())
        .retry_config(retry_config(max_attempts))
        .timeout_config(timeout_config())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_the_sdks_standard_mode_or_off() {
        let r = retry_config(5);
        assert_eq!(r.max_attempts(), 5);
        assert_eq!(r.initial_backoff(), Duration::from_millis(500));
        assert_eq!(retry_config(1).max_attempts(), 1, "1 attempt: no SDK retry");
        let t = timeout_config();
        assert_eq!(t.connect_timeout(), Some(Duration::from_secs(10)));
    }
}
