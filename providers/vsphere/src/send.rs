//! A future wrapper that asserts `Send` instead of letting the compiler prove it.
//!
//! `async_trait` requires the provider's futures to be `Send`. Proving that for
//! futures holding vim_rs's data types makes rustc walk vim_rs's whole (cyclic) type
//! graph, which takes many minutes of compile time per method. Every vim_rs data type
//! is plain data whose trait objects require `Send + Sync`
//! (`VimObjectTrait: Send + Sync`), and the client is `Arc<dyn VimClient>` with
//! `VimClient: Send + Sync`, so those futures are `Send`: this wrapper only spares
//! the compiler the proof.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`, declared `Send`. Only wrap futures whose captures are vim_rs types, triad
/// types, `&VsphereProvider` and std/tokio types, all of which are `Send`.
pub(crate) struct AssertSend<F>(pub(crate) F);

// SAFETY: see the module documentation: everything the wrapped futures hold is Send
// (vim_rs data types and client handles are Send + Sync by their trait bounds); the
// wrapper exists only to avoid rustc's exponential auto-trait proof over vim_rs types.
unsafe impl<F> Send for AssertSend<F> {}

impl<F: Future> Future for AssertSend<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the only field; `AssertSend` never moves it.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}
