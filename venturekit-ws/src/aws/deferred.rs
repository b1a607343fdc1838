//! Cold start without the AWS SDK's load on the critical path.
//!
//! Loading the SDK's shared configuration builds its HTTPS client, which reads and parses the
//! system's trust store: most of what a Lambda init would spend (BENCHMARKS.md, "Cold start").
//! Nothing at init needs it, so the Lambda bootstrap starts [`SdkLoader`] on a thread of its
//! own and asks the Runtime API for the first event at once; the clients ([`ClientCell`]) are
//! built from the loaded configuration on first use — by then it is usually ready.

use aws_config::SdkConfig;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

/// The shared SDK configuration, loading on a background thread.
#[derive(Clone)]
pub struct SdkLoader(Shared<BoxFuture<'static, SdkConfig>>);

impl std::fmt::Debug for SdkLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkLoader")
            .field("ready", &self.0.peek().is_some())
            .finish()
    }
}

impl SdkLoader {
    /// Starts loading [`super::sdk_config`] on a new thread (with a runtime of its own).
    pub fn start() -> SdkLoader {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("aws-sdk-config".into())
            .spawn(move || {
                let config = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(super::sdk_config()));
                if let Ok(config) = config {
                    let _ = tx.send(config);
                }
            });
        let loaded = async move {
            match spawned {
                Ok(_) => match rx.await {
                    Ok(config) => config,
                    // The thread could not build a runtime: load here instead.
                    Err(_) => super::sdk_config().await,
                },
                Err(_) => super::sdk_config().await,
            }
        };
        SdkLoader(loaded.boxed().shared())
    }

    /// A loader that is already done.
    pub fn ready(config: SdkConfig) -> SdkLoader {
        SdkLoader(futures_util::future::ready(config).boxed().shared())
    }

    /// The configuration, once loaded.
    pub async fn get(&self) -> SdkConfig {
        self.0.clone().await
    }
}

/// Builds a client from the loaded configuration.
pub(crate) type MakeClient<C> = std::sync::Arc<dyn Fn(&SdkConfig) -> C + Send + Sync>;

/// An SDK client, given, or built on first use from an [`SdkLoader`].
#[derive(Clone)]
pub(crate) enum ClientCell<C> {
    /// Built already.
    Ready(C),
    /// Built by the function once the configuration has loaded.
    Deferred(SdkLoader, MakeClient<C>, tokio::sync::OnceCell<C>),
}

impl<C> std::fmt::Debug for ClientCell<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = match self {
            ClientCell::Ready(_) => true,
            ClientCell::Deferred(_, _, cell) => cell.initialized(),
        };
        f.debug_struct("ClientCell").field("built", &built).finish()
    }
}

impl<C> ClientCell<C> {
    /// A client built by `make` once `sdk` has loaded.
    pub(crate) fn deferred(
        sdk: SdkLoader,
        make: impl Fn(&SdkConfig) -> C + Send + Sync + 'static,
    ) -> Self {
        ClientCell::Deferred(sdk, std::sync::Arc::new(make), tokio::sync::OnceCell::new())
    }

    /// The client.
    pub(crate) async fn get(&self) -> &C {
        match self {
            ClientCell::Ready(client) => client,
            ClientCell::Deferred(sdk, make, cell) => {
                cell.get_or_init(|| async { make(&sdk.get().await) }).await
            }
        }
    }
}
