//! Durability: write, stop (cleanly or by crashing), damage the log's tail the way a torn write would, restart on
//! the same directory: every acknowledged event is there, nothing half-written is visible, positions continue.

use std::io::Write;
use std::path::{Path, PathBuf};

use eventstore::{
    AppendToStreamOptions, Error, EventData, ExpectedRevision, ReadStreamOptions, StreamMetadata,
    StreamPosition, TombstoneStreamOptions,
};
use eventstore_lite::ServerConfig;
use futures::future::try_join_all;
use uuid::Uuid;

use crate::helpers::*;

/// A durable server without system projections, so the log's last record is the test's last write.
async fn start_on(dir: &Path) -> TestApp {
    let mut config = ServerConfig::on_disk(dir);
    config.start_standard_projections = false;
    spawn_app_with(config).await
}

async fn crash(app: TestApp) {
    let TestApp { server, client } = app;
    drop(client);
    within("the crash", server.crash()).await;
}

async fn shut_down(app: TestApp) -> anyhow::Result<()> {
    let TestApp { server, client } = app;
    drop(client);
    within("the shutdown", server.shutdown()).await
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(eventstore_lite::storage::LOG_FILE_NAME)
}

/// Length of the log file's header, before the first record.
const LOG_HEADER_LEN: usize = 16;
/// `[u32 length][u32 crc32c]` before each record's payload.
const FRAME_HEADER_LEN: usize = 8;

/// `(offset, framed length)` of every record in the log. A record is `[u32 LE payload length][u32 crc32c]
/// [payload]`, possibly followed by a trailer (such as the length again, for backwards scans); the trailer's size
/// is whichever makes the records tile the file exactly.
fn log_records(dir: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(log_path(dir)).expect("the log file exists");
    assert!(
        bytes.len() >= LOG_HEADER_LEN,
        "the log starts with a {LOG_HEADER_LEN}-byte header"
    );
    let tile = |trailer_len: usize| -> Option<Vec<(u64, u64)>> {
        let mut records = Vec::new();
        let mut offset = LOG_HEADER_LEN;
        while offset < bytes.len() {
            let length_field = bytes.get(offset..offset + 4)?;
            let length = u32::from_le_bytes(length_field.try_into().ok()?) as usize;
            let framed_len = FRAME_HEADER_LEN + length + trailer_len;
            if offset + framed_len > bytes.len() {
                return None;
            }
            records.push((offset as u64, framed_len as u64));
            offset += framed_len;
        }
        Some(records)
    };
    [0, 4, 8].into_iter().find_map(tile).unwrap_or_else(|| {
        panic!(
            "the log's {} bytes are not a header and whole records",
            bytes.len()
        )
    })
}

fn truncate_log(dir: &Path, len: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(log_path(dir))
        .expect("the log opens");
    file.set_len(len).expect("the log is cut");
    file.sync_all().expect("the cut is durable");
}

fn append_to_log(dir: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(log_path(dir))
        .expect("the log opens");
    file.write_all(bytes).expect("the garbage is written");
    file.sync_all().expect("the garbage is durable");
}

async fn stream_summaries(
    client: &eventstore::Client,
    stream: &str,
) -> anyhow::Result<Vec<Summary>> {
    Ok(read_stream(client, stream)
        .await?
        .iter()
        .map(|e| summary(original(e)))
        .collect())
}

fn with_id(event_type: &str, n: u64) -> EventData {
    json_event(event_type, n).id(Uuid::new_v4())
}

fn expecting(revision: ExpectedRevision) -> AppendToStreamOptions {
    AppendToStreamOptions::default().expected_revision(revision)
}

/// Writes revisions 0..=9 of `stream` in three appends and returns what a read shows.
async fn write_ten(client: &eventstore::Client, stream: &str) -> anyhow::Result<Vec<Summary>> {
    client
        .append_to_stream(
            stream,
            &expecting(ExpectedRevision::NoStream),
            json_events("Recorded", 0, 4),
        )
        .await?;
    client
        .append_to_stream(
            stream,
            &expecting(ExpectedRevision::Exact(3)),
            json_events("Recorded", 4, 3),
        )
        .await?;
    client
        .append_to_stream(
            stream,
            &expecting(ExpectedRevision::Exact(6)),
            json_events("Recorded", 7, 3),
        )
        .await?;
    let events = stream_summaries(client, stream).await?;
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    Ok(events)
}

/// After recovery: `stream` holds exactly `kept`, `$all` equals `all_kept`, the next append takes revision 10
/// at a later position, and that append itself survives another restart.
async fn assert_recovered(
    dir: &Path,
    stream: &str,
    kept: &[Summary],
    all_kept: &[Summary],
    context: &str,
) -> anyhow::Result<()> {
    let app = start_on(dir).await;
    assert_eq!(
        stream_summaries(&app.client, stream).await?,
        kept,
        "{context}: the stream"
    );
    assert_eq!(
        read_all_forwards(&app.client).await,
        all_kept,
        "{context}: $all"
    );

    let next = with_id("Recorded", 10);
    let written = app
        .client
        .append_to_stream(stream, &expecting(ExpectedRevision::Exact(9)), next)
        .await
        .map_err(|e| anyhow::anyhow!("{context}: the next append: {e}"))?;
    assert_eq!(written.next_expected_version, 10, "{context}");
    let last_kept = all_kept.last().expect("events were kept").position;
    assert!(
        written.position > last_kept,
        "{context}: positions continue after {last_kept}"
    );
    let after_append = stream_summaries(&app.client, stream).await?;
    assert_eq!(after_append.len(), 11, "{context}");
    assert_eq!(after_append[10].position, written.position, "{context}");
    shut_down(app).await?;

    let app = start_on(dir).await;
    assert_eq!(
        stream_summaries(&app.client, stream).await?,
        after_append,
        "{context}: the append made after recovery survives a restart"
    );
    shut_down(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_clean_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_on(dir.path()).await;
    let streams: Vec<String> = (0..3).map(|_| unique_stream("durable")).collect();
    for round in 0..4 {
        for stream in &streams {
            app.client
                .append_to_stream(
                    stream.as_str(),
                    &Default::default(),
                    json_events("Saved", round * 5, 5),
                )
                .await?;
        }
    }
    let batched = unique_stream("batched");
    let batch = app.client.batch_append(&Default::default()).await?;
    batch
        .append_to_stream(
            &batched,
            ExpectedRevision::NoStream,
            json_events("Saved", 0, 10),
        )
        .await?;
    drop(batch);
    let windowed = unique_stream("windowed");
    app.client
        .append_to_stream(
            windowed.as_str(),
            &Default::default(),
            json_events("Saved", 0, 5),
        )
        .await?;
    app.client
        .set_stream_metadata(
            windowed.as_str(),
            &Default::default(),
            &StreamMetadata::builder().max_count(2).build(),
        )
        .await?;
    let deleted = unique_stream("deleted");
    app.client
        .append_to_stream(
            deleted.as_str(),
            &Default::default(),
            json_events("Saved", 0, 2),
        )
        .await?;
    app.client
        .delete_stream(deleted.as_str(), &Default::default())
        .await?;
    let tombstoned = unique_stream("tombstoned");
    app.client
        .append_to_stream(
            tombstoned.as_str(),
            &Default::default(),
            json_event("Saved", 0),
        )
        .await?;
    app.client
        .tombstone_stream(tombstoned.as_str(), &TombstoneStreamOptions::default())
        .await?;

    let all_before = read_all_forwards(&app.client).await;
    let mut streams_before = Vec::new();
    for stream in streams.iter().chain([&batched, &windowed]) {
        streams_before.push(stream_summaries(&app.client, stream).await?);
    }
    shut_down(app).await?;

    let app = start_on(dir.path()).await;
    assert_eq!(
        read_all_forwards(&app.client).await,
        all_before,
        "$all, positions included, is unchanged"
    );
    for (stream, before) in streams
        .iter()
        .chain([&batched, &windowed])
        .zip(&streams_before)
    {
        assert_eq!(
            &stream_summaries(&app.client, stream).await?,
            before,
            "{stream}"
        );
    }
    assert_eq!(
        stream_revisions(&app.client, &windowed).await?,
        vec![3, 4],
        "metadata still applies"
    );
    assert!(
        matches!(
            read_stream(&app.client, &deleted).await,
            Err(Error::ResourceNotFound)
        ),
        "still deleted"
    );
    assert!(
        matches!(
            read_stream(&app.client, &tombstoned).await,
            Err(Error::ResourceDeleted)
        ),
        "still tombstoned"
    );

    let written = app
        .client
        .append_to_stream(
            streams[0].as_str(),
            &expecting(ExpectedRevision::Exact(19)),
            json_event("Saved", 20),
        )
        .await?;
    assert_eq!(written.next_expected_version, 20);
    assert!(
        written.position > all_before.last().expect("events").position,
        "positions continue increasing"
    );
    let undeleted = app
        .client
        .append_to_stream(
            deleted.as_str(),
            &Default::default(),
            json_event("Saved", 2),
        )
        .await?;
    assert_eq!(
        undeleted.next_expected_version, 2,
        "numbering after a soft delete survives the restart"
    );
    let all_after = read_all_forwards(&app.client).await;
    assert_positions_strictly_increase(&all_after);
    shut_down(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_a_crash() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_on(dir.path()).await;
    let streams: Vec<String> = (0..8).map(|_| unique_stream("crashy")).collect();

    // Concurrent single-event appends, so acknowledgements share fsyncs.
    let acknowledged: Vec<Vec<(Uuid, u64, eventstore::Position)>> = within(
        "concurrent appends",
        try_join_all(streams.iter().map(|stream| {
            let client = app.client.clone();
            let stream = stream.clone();
            async move {
                let mut acknowledged = Vec::new();
                for n in 0..10 {
                    let id = Uuid::new_v4();
                    let event = json_event("Ticked", n).id(id);
                    let written = client
                        .append_to_stream(stream.as_str(), &Default::default(), event)
                        .await?;
                    acknowledged.push((id, written.next_expected_version, written.position));
                }
                Ok::<_, Error>(acknowledged)
            }
        })),
    )
    .await?;
    crash(app).await;

    let app = start_on(dir.path()).await;
    for (stream, acknowledged) in streams.iter().zip(&acknowledged) {
        let stored: Vec<(Uuid, u64, eventstore::Position)> = stream_summaries(&app.client, stream)
            .await?
            .into_iter()
            .map(|e| (e.id, e.revision, e.position))
            .collect();
        assert_eq!(&stored, acknowledged, "{stream}");
    }
    let names: Vec<&str> = streams.iter().map(String::as_str).collect();
    let all = all_events_of(&app.client, &names).await;
    assert_eq!(all.len(), 8 * 10);
    assert_positions_strictly_increase(&all);
    let last = all.last().expect("events").position;
    let written = app
        .client
        .append_to_stream(
            streams[0].as_str(),
            &Default::default(),
            json_event("Ticked", 10),
        )
        .await?;
    assert_eq!(written.next_expected_version, 10);
    assert!(written.position > last);
    shut_down(app).await
}

/// Where, inside the last record, the crash tore the write.
#[derive(Debug, Clone, Copy)]
enum Tear {
    InsideTheLength,
    InsideTheChecksum,
    AfterTheFrameHeader,
    MidPayload,
    OneByteShort,
}

impl Tear {
    /// Bytes of a record of `framed_len` bytes that made it to disk.
    fn kept_bytes(self, framed_len: u64) -> u64 {
        let header = FRAME_HEADER_LEN as u64;
        match self {
            Tear::InsideTheLength => 2,
            Tear::InsideTheChecksum => 6,
            Tear::AfterTheFrameHeader => header,
            Tear::MidPayload => header + (framed_len - header) / 2,
            Tear::OneByteShort => framed_len - 1,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_invisible_after_recovery() -> anyhow::Result<()> {
    for tear in [
        Tear::InsideTheLength,
        Tear::InsideTheChecksum,
        Tear::AfterTheFrameHeader,
        Tear::MidPayload,
        Tear::OneByteShort,
    ] {
        let context = format!("{tear:?}");
        let dir = tempfile::tempdir()?;
        let app = start_on(dir.path()).await;
        let stream = unique_stream("torn");
        let kept = write_ten(&app.client, &stream).await?;
        let all_kept = read_all_forwards(&app.client).await;
        app.client
            .append_to_stream(
                stream.as_str(),
                &expecting(ExpectedRevision::Exact(9)),
                with_id("Recorded", 10),
            )
            .await?;
        crash(app).await;

        let records = log_records(dir.path());
        assert!(records.len() >= 11, "{context}: one record per event");
        let (offset, framed_len) = *records.last().expect("records");
        truncate_log(dir.path(), offset + tear.kept_bytes(framed_len));

        // `all_kept` was read before the torn append: equality means the torn event is nowhere in `$all`.
        assert_recovered(dir.path(), &stream, &kept, &all_kept, &context).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_multi_event_append_is_invisible_as_a_whole() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_on(dir.path()).await;
    let stream = unique_stream("torn");
    let kept = write_ten(&app.client, &stream).await?;
    let all_kept = read_all_forwards(&app.client).await;
    let batch: Vec<EventData> = (10..13).map(|n| with_id("Recorded", n)).collect();
    let written = app
        .client
        .append_to_stream(
            stream.as_str(),
            &expecting(ExpectedRevision::Exact(9)),
            batch,
        )
        .await?;
    assert_eq!(written.next_expected_version, 12);
    crash(app).await;

    // Only the batch's last record is torn; its first two are whole on disk, yet the append is all or nothing.
    let (offset, framed_len) = *log_records(dir.path()).last().expect("records");
    truncate_log(dir.path(), offset + Tear::MidPayload.kept_bytes(framed_len));

    assert_recovered(
        dir.path(),
        &stream,
        &kept,
        &all_kept,
        "a torn three-event append",
    )
    .await
}

/// A deterministic sequence of bytes that looks like nothing in particular.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_record_is_ignored() -> anyhow::Result<()> {
    for case in [
        "noise",
        "zeros",
        "a frame header promising more than there is",
        "a whole frame with a bad checksum",
    ] {
        let dir = tempfile::tempdir()?;
        let app = start_on(dir.path()).await;
        let stream = unique_stream("tail");
        let kept = write_ten(&app.client, &stream).await?;
        let all_kept = read_all_forwards(&app.client).await;
        crash(app).await;

        let garbage = match case {
            "noise" => noise(1_000),
            "zeros" => vec![0; 4_096],
            "a frame header promising more than there is" => {
                let mut frame = 1_000u32.to_le_bytes().to_vec();
                frame.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
                frame.extend_from_slice(&noise(10));
                frame
            }
            _ => {
                // A copy of the last record with one payload byte flipped: whole, but its checksum fails.
                let (offset, framed_len) = *log_records(dir.path()).last().expect("records");
                let bytes = std::fs::read(log_path(dir.path()))?;
                let mut frame = bytes[offset as usize..(offset + framed_len) as usize].to_vec();
                let inside_the_payload = FRAME_HEADER_LEN + (frame.len() - FRAME_HEADER_LEN) / 2;
                frame[inside_the_payload] ^= 0xFF;
                frame
            }
        };
        append_to_log(dir.path(), &garbage);

        assert_recovered(dir.path(), &stream, &kept, &all_kept, case).await?;
    }
    Ok(())
}

/// A durable server with the system projections on (`$ce-`, `$et-`, `$streams`, `$category-`).
async fn start_with_system_projections_on(dir: &Path) -> TestApp {
    spawn_app_with(ServerConfig::on_disk(dir)).await
}

/// A read of a link stream with links resolved: each link's revision and the event it points at.
async fn resolved_links(
    client: &eventstore::Client,
    stream: &str,
    options: ReadStreamOptions,
) -> anyhow::Result<Vec<(u64, Summary)>> {
    read_stream_with(client, stream, &options.resolve_link_tos())
        .await?
        .iter()
        .map(|e| {
            let link = e
                .link
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{stream}: not a link"))?;
            let target = e.event.as_ref().ok_or_else(|| {
                anyhow::anyhow!("{stream}@{}: the link does not resolve", link.revision)
            })?;
            Ok((link.revision, summary(target)))
        })
        .collect()
}

/// What the `$ce-` and `$et-` streams must show for `events` (in `$all` order): every event, numbered from 0.
fn expected_links(events: &[Summary], keep: impl Fn(&Summary) -> bool) -> Vec<(u64, Summary)> {
    events
        .iter()
        .filter(|e| keep(e))
        .cloned()
        .enumerate()
        .map(|(n, e)| (n as u64, e))
        .collect()
}

/// Reads every link stream of the test forwards, backwards, and in short pages around `middle`, and compares them
/// with `expected`.
async fn assert_links(
    client: &eventstore::Client,
    expected: &[(&str, Vec<(u64, Summary)>)],
    middle: u64,
    context: &str,
) -> anyhow::Result<()> {
    for (stream, links) in expected {
        let forwards = resolved_links(client, stream, ReadStreamOptions::default()).await?;
        assert_eq!(&forwards, links, "{context}: {stream} forwards");
        let backwards = resolved_links(
            client,
            stream,
            ReadStreamOptions::default()
                .position(StreamPosition::End)
                .backwards(),
        )
        .await?;
        let reversed: Vec<_> = links.iter().rev().cloned().collect();
        assert_eq!(backwards, reversed, "{context}: {stream} backwards");
        let from = middle.min(links.len() as u64 - 1);
        let page = resolved_links(
            client,
            stream,
            ReadStreamOptions::default()
                .position(StreamPosition::Position(from))
                .max_count(5),
        )
        .await?;
        let wanted: Vec<_> = links.iter().skip(from as usize).take(5).cloned().collect();
        assert_eq!(page, wanted, "{context}: {stream} forwards from {from}");
        let page = resolved_links(
            client,
            stream,
            ReadStreamOptions::default()
                .position(StreamPosition::Position(from))
                .backwards()
                .max_count(5),
        )
        .await?;
        let wanted: Vec<_> = links[..=from as usize]
            .iter()
            .rev()
            .take(5)
            .cloned()
            .collect();
        assert_eq!(page, wanted, "{context}: {stream} backwards from {from}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_projection_links_are_exact_after_a_crash_with_a_torn_tail() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_with_system_projections_on(dir.path()).await;
    let tag = Uuid::new_v4().simple().to_string();
    let category = format!("linked{tag}");
    let opened = format!("Opened{tag}");
    let noted = format!("Noted{tag}");
    let streams: Vec<String> = (0..3).map(|_| unique_stream(&category)).collect();
    // Concurrent appends mixing two event types, so that write batches interleave streams and types; then one
    // append longer than a run of links.
    let any = AppendToStreamOptions::default();
    for round in 0..3 {
        try_join_all(streams.iter().map(|stream| {
            let mut events = json_events(&opened, round * 10, 4);
            events.extend(json_events(&noted, round * 10 + 4, 3));
            app.client.append_to_stream(stream.as_str(), &any, events)
        }))
        .await?;
    }
    app.client
        .append_to_stream(
            streams[0].as_str(),
            &Default::default(),
            json_events(&noted, 100, 300),
        )
        .await?;
    let names: Vec<&str> = streams.iter().map(String::as_str).collect();
    let kept = all_events_of(&app.client, &names).await;
    assert_eq!(kept.len(), 3 * 3 * 7 + 300);
    let ce = format!("$ce-{category}");
    let et_opened = format!("$et-{opened}");
    let et_noted = format!("$et-{noted}");
    let expected = |events: &[Summary]| {
        vec![
            (ce.as_str(), expected_links(events, |_| true)),
            (
                et_opened.as_str(),
                expected_links(events, |e| e.event_type == opened),
            ),
            (
                et_noted.as_str(),
                expected_links(events, |e| e.event_type == noted),
            ),
        ]
    };
    assert_links(&app.client, &expected(&kept), 60, "before the crash").await?;

    // The last append is torn: its first records are whole on disk, its last one is not.
    let torn = app
        .client
        .append_to_stream(
            streams[1].as_str(),
            &Default::default(),
            [json_events(&opened, 500, 2), json_events(&noted, 502, 2)].concat(),
        )
        .await?;
    crash(app).await;
    let (offset, framed_len) = log_records(dir.path())
        .into_iter()
        .find(|(offset, _)| *offset == torn.position.prepare)
        .expect("the torn append's last record is in the log");
    truncate_log(dir.path(), offset + Tear::MidPayload.kept_bytes(framed_len));

    let app = start_with_system_projections_on(dir.path()).await;
    assert_eq!(all_events_of(&app.client, &names).await, kept);
    assert_links(&app.client, &expected(&kept), 60, "after the crash").await?;

    // Numbering continues where the kept links end, and survives a clean restart.
    app.client
        .append_to_stream(
            streams[2].as_str(),
            &Default::default(),
            json_event(&opened, 600),
        )
        .await?;
    let after = all_events_of(&app.client, &names).await;
    assert_eq!(after.len(), kept.len() + 1);
    assert_links(&app.client, &expected(&after), 200, "after the next append").await?;
    shut_down(app).await?;
    let app = start_with_system_projections_on(dir.path()).await;
    assert_links(&app.client, &expected(&after), 130, "after a clean restart").await?;
    shut_down(app).await
}
