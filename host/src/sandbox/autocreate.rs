//! A journal client that creates a journal the first time something appends
//! to it, so that a sandboxed guest can publish wherever it publishes in
//! production without the tester listing its output journals.
//!
//! Every journal it creates is JSON lines (`content-type:
//! application/x-ndjson`), and is remembered: [`AutoCreateClient::created`]
//! is the list of journals the guest published to. Everything else passes
//! through unchanged. An append to a journal whose name is invalid still
//! fails, with the broker's error.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::broker::protocol::{
    AppendRequest, AppendResponse, BrokerError, JournalChange, JournalClient, ReadRequest,
    ReadStream,
};
use crate::broker::spec::{JournalSpec, LabelSelector, LabelSet};
use crate::message::NDJSON;

/// The label naming a journal's content type.
pub const CONTENT_TYPE_LABEL: &str = "content-type";

/// See the module docs.
pub struct AutoCreateClient {
    inner: Arc<dyn JournalClient>,
    created: Mutex<BTreeSet<String>>,
    /// Serializes creations, so that two first appends create once.
    creating: tokio::sync::Mutex<()>,
}

impl AutoCreateClient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JournalClient>) -> AutoCreateClient {
        AutoCreateClient {
            inner,
            created: Mutex::new(BTreeSet::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// The journals created so far, sorted by name.
    pub fn created(&self) -> Vec<String> {
        self.created_lock().iter().cloned().collect()
    }

    fn created_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn create(&self, journal: &str) -> Result<(), BrokerError> {
        let _creating = self.creating.lock().await;
        if self.created_lock().contains(journal) {
            return Ok(());
        }
        let mut labels = LabelSet::new();
        labels.insert(CONTENT_TYPE_LABEL, NDJSON);
        self.inner
            .apply(vec![JournalChange::Upsert(
                JournalSpec::new(journal).with_labels(labels),
            )])
            .await?;
        self.created_lock().insert(journal.to_string());
        tracing::debug!(journal, "created a journal the guest publishes to");
        Ok(())
    }
}

#[async_trait]
impl JournalClient for AutoCreateClient {
    async fn list(&self, selector: &LabelSelector) -> Result<Vec<JournalSpec>, BrokerError> {
        self.inner.list(selector).await
    }

    async fn apply(&self, changes: Vec<JournalChange>) -> Result<(), BrokerError> {
        self.inner.apply(changes).await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResponse, BrokerError> {
        match self.inner.append(request.clone()).await {
            Err(BrokerError::JournalNotFound(_)) => {
                self.create(&request.journal).await?;
                self.inner.append(request).await
            }
            other => other,
        }
    }

    async fn read(&self, request: ReadRequest) -> Result<Box<dyn ReadStream>, BrokerError> {
        self.inner.read(request).await
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::broker::{Broker, BrokerConfig};

    #[tokio::test]
    async fn a_first_append_creates_an_ndjson_journal_once_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(dir.path(), BrokerConfig::default())
            .await
            .unwrap();
        let client = AutoCreateClient::new(Arc::new(broker.clone()));
        for round in 0..2 {
            let response = client
                .append(AppendRequest {
                    journal: "out/a".into(),
                    content: bytes::Bytes::from_static(b"{}\n"),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(response.end, 3 * (round + 1));
        }
        assert_eq!(client.created(), ["out/a"]);
        let specs = client.list(&LabelSelector::default()).await.unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].labels.get(CONTENT_TYPE_LABEL), Some(NDJSON));

        let invalid = client
            .append(AppendRequest {
                journal: "/not/a/name".into(),
                content: bytes::Bytes::from_static(b"{}\n"),
                ..Default::default()
            })
            .await;
        assert!(invalid.is_err());
        assert_eq!(client.created(), ["out/a"]);
        broker.shutdown().await;
    }
}
