//! Appends through one long-lived BatchAppend session per connection rather than one `Append` call each.
//!
//! An `Append` call is a new HTTP/2 stream with its own headers, request and response: measured with
//! `eventstore-lite bench write-flood` (64 writers, 1 event per append) it costs ~57 µs of CPU per append, client and
//! server together, against ~26 µs for the same appends sent as messages of one BatchAppend call — and every
//! stage of a payment is an append. The official client's session ends at the first append that fails (a wrong
//! expected revision included) and answers the appends still in flight with a "closed" error, so an append the
//! session did not confirm is sent again as a plain `Append` with the same events: their ids make a repeat of a
//! write that did happen a no-op in the store, and the plain call reports a failure with its details (the
//! stream's actual revision, access denied, …), which a session's error does not carry. The next append opens a
//! new session. A store without BatchAppend gets plain `Append` calls only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventstore::{AppendToStreamOptions, BatchAppendClient, Client, EventData, ExpectedRevision};
use tokio::sync::Mutex;

use crate::store::Appended;

/// The stream the append that ends a session names (nothing is ever written to it).
const SESSION_END_STREAM: &str = "batch-append-session-end";
/// How long after a session failed to open the next append tries again (plain appends meanwhile).
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// How long an append waits for the session's answer before it gives up on the session and appends alone. The
/// official client's session can go quiet without failing its appends (a response stream that ends cleanly).
const SESSION_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

enum Session {
    /// None open: the next append opens one.
    Closed,
    Open(Arc<BatchAppendClient>),
    /// Opening failed at this instant.
    FailedAt(Instant),
    /// The store has no BatchAppend.
    Unsupported,
}

pub(crate) struct Appender {
    client: Client,
    session: Mutex<Session>,
}

impl Appender {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            session: Mutex::new(Session::Closed),
        }
    }

    /// Appends `events` to `stream` if it is at `expected`: through the session when there is one, else (or when
    /// the session did not confirm the write) as a plain `Append`.
    pub(crate) async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> eventstore::Result<Appended> {
        if let Some(session) = self.session().await {
            let answer = tokio::time::timeout(
                SESSION_ANSWER_TIMEOUT,
                session.append_to_stream(stream, expected, events.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(eventstore::Error::ServerError(
                    "no answer from the batch append session".to_owned(),
                ))
            });
            match answer {
                Ok(result) => {
                    if let (Some(last_revision), Some(position)) =
                        (result.current_revision(), result.current_position())
                    {
                        return Ok(Appended {
                            last_revision,
                            position,
                        });
                    }
                }
                Err(error) => {
                    tracing::debug!(%stream, %error, "the batch append session did not confirm an append; appending alone");
                    self.close(&session).await;
                }
            }
        }
        let options = AppendToStreamOptions::default().expected_revision(expected);
        self.client
            .append_to_stream(stream, &options, events)
            .await
            .map(|result| Appended {
                last_revision: result.next_expected_version,
                position: result.position,
            })
    }

    /// The open session, opening one when there is none (and the last attempt is not too recent).
    async fn session(&self) -> Option<Arc<BatchAppendClient>> {
        let mut session = self.session.lock().await;
        match &*session {
            Session::Open(open) => return Some(open.clone()),
            Session::Unsupported => return None,
            Session::FailedAt(at) if at.elapsed() < REOPEN_AFTER => return None,
            Session::FailedAt(_) | Session::Closed => {}
        }
        match self.client.batch_append(&Default::default()).await {
            Ok(opened) => {
                let opened = Arc::new(opened);
                *session = Session::Open(opened.clone());
                Some(opened)
            }
            Err(eventstore::Error::UnsupportedFeature) => {
                tracing::info!("the event store has no BatchAppend; appending with Append calls");
                *session = Session::Unsupported;
                None
            }
            Err(error) => {
                tracing::debug!(%error, "no batch append session; appending with Append calls");
                *session = Session::FailedAt(Instant::now());
                None
            }
        }
    }

    /// Ends the open session, if any, on the server's side too. The official client keeps a session's call open
    /// until an append on it fails or the server ends it, even once nobody holds the session — so a store that
    /// shut down later would end it with `Unavailable`, which the client logs as an ERROR. An append that must
    /// fail (an empty one, expecting a revision no stream has) ends it quietly instead.
    fn end_session(&mut self) {
        let Session::Open(session) = std::mem::replace(self.session.get_mut(), Session::Closed)
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let never = ExpectedRevision::Exact(i64::MAX as u64 - 1);
            let _ = tokio::time::timeout(
                SESSION_ANSWER_TIMEOUT,
                session.append_to_stream(SESSION_END_STREAM, never, Vec::new()),
            )
            .await;
        });
    }

    /// Forgets `failed` if it is still the current session (a concurrent append may have replaced it already).
    async fn close(&self, failed: &Arc<BatchAppendClient>) {
        let mut session = self.session.lock().await;
        if matches!(&*session, Session::Open(open) if Arc::ptr_eq(open, failed)) {
            *session = Session::Closed;
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.end_session();
    }
}
