//! Assembles and runs the service: storage, key, directory, channels, background loops
//! and the HTTP listener; [`start`] returns a handle tests and benchmarks use too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::{self, AppState};
use crate::channels::Notifier;
use crate::config::Config;
use crate::directory::Directory;
use crate::keys::{self, KeyFileError};
use crate::service::Service;
use crate::store::{Store, StoreError};
use crate::tls::Peer;
use crate::web::Web;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing key problem.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Could not listen.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running service.
pub struct Running {
    /// Bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The service core.
    pub service: Arc<Service>,
    scheme: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Base URL, e.g. `http://127.0.0.1:41234` (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops listening and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Opens storage, loads the key, binds `config.listen` and serves in the background.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let store = Store::connect(&config.storage_url).await?;
    let key = keys::load_or_generate(&config.signing_key_path)?;
    let notifier = Notifier::new(
        config.channels.clone(),
        store.clone(),
        config.public_url.clone(),
    );
    let service = Service::new(store, Directory::new(&config.principals), key, notifier);
    service.spawn_background(
        Duration::from_secs(config.sweep_interval_secs.max(1)),
        Duration::from_millis(config.replica_poll_ms.max(20)),
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let config_listen = config.listen;
    let state = AppState {
        svc: Arc::clone(&service),
        tokens: Arc::new(api::auth::Tokens::new(&config)),
        web: Arc::new(Web::new(
            config.oidc.clone(),
            config.public_url.clone(),
            addr,
        )),
        config: Arc::new(config),
    };
    let tls = match &state.config.tls {
        Some(t) => Some(crate::tls::server_config(t)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let router = api::router(state);
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    let task = match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls).map_err(|source| {
                StartError::Listen {
                    addr: config_listen,
                    source,
                }
            })?;
            let app = router.into_make_service_with_connect_info::<Peer>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            })
        }
        None => {
            let app = router.into_make_service_with_connect_info::<Peer>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            })
        }
    };
    tracing::info!(%addr, "dbward-approver listening");
    Ok(Running {
        addr,
        service,
        scheme,
        shutdown: Some(tx),
        task,
    })
}
